#pragma once
// The Quantize step's mixed-precision table: per-(layer, tap) overrides of the chosen setting, one row each
// (which layers, which taps, what they get), in the syntax of rptq::parse_override and `rptq --override`
// ("layers=0-3,ffn_hidden:abits=16"). A row that does not parse is shown in red with the reason; a later row wins
// where two select the same (layer, tap), as in the core.
#include <QStringList>
#include <QWidget>

class QLabel;
class QPushButton;
class QTableWidget;

namespace rptq::ui {

class OverridesEditor : public QWidget {
  Q_OBJECT
 public:
  explicit OverridesEditor(QWidget* parent = nullptr);

  // The rows as override specs, in order (empty rows left out).
  QStringList specs() const;
  // Replaces the rows (each spec split into its layers, taps and settings).
  void set_specs(const QStringList& specs);
  // The first row's error ("" when every row parses).
  QString error() const { return error_; }

  QTableWidget* table() const { return table_; }
  QPushButton* add_button() const { return add_; }
  QPushButton* remove_button() const { return remove_; }

  // One row's spec from its three cells: "all" (or nothing) selects every layer / every tap but K and V.
  static QString spec_of(const QString& layers, const QString& taps, const QString& set);
  // The reverse: a spec's layers ("all" when it names none), taps ("all") and settings.
  static void split_spec(const QString& spec, QString& layers, QString& taps, QString& set);

 Q_SIGNALS:
  void changed();  // a row was added, removed or edited

 private:
  void add_row(const QString& layers, const QString& taps, const QString& set);
  void validate();

  QTableWidget* table_;
  QPushButton* add_;
  QPushButton* remove_;
  QLabel* hint_;
  QString error_;
  bool filling_ = false;
};

}  // namespace rptq::ui
