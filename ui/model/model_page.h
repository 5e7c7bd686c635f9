#pragma once
// The Model step: open a Hugging Face model folder or an exported checkpoint (dialogs, drag and drop, recent
// models, the local Hugging Face cache), and what it is: architecture, dimensions, parameters, dtypes, size on
// disk, and whether its tokenizer loads.
#include <QWidget>

#include "model/hf_cache.h"

class QFormLayout;
class QLabel;
class QPushButton;
class QTreeWidget;
class QTreeWidgetItem;

namespace rptq::ui {

class Session;

class ModelPage : public QWidget {
  Q_OBJECT
 public:
  explicit ModelPage(Session* session, QWidget* parent = nullptr);

  // The value shown for a property ("architecture", "parameters", "tokenizer", ...), for tests and screenshots.
  QString info_value(const QString& key) const;
  QTreeWidget* cache_list() const { return cache_; }

 Q_SIGNALS:
  void open_requested(const QString& path);
  void open_folder_dialog_requested();
  void open_checkpoint_dialog_requested();

 public Q_SLOTS:
  void refresh_cache();
  void set_busy(bool busy, const QString& what = {});

 private Q_SLOTS:
  void show_model();
  void open_selected_cached(QTreeWidgetItem* item = nullptr);

 private:
  void add_row(const QString& key, const QString& label, const QString& value, const QString& tip = {});
  void clear_rows();

  Session* session_;
  QLabel* title_;
  QLabel* subtitle_;
  QFormLayout* form_;
  QLabel* hub_label_;
  QTreeWidget* cache_;
  QPushButton* open_cached_;
  QLabel* busy_;
};

}  // namespace rptq::ui
