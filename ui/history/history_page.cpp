#include "history/history_page.h"

#include <QBrush>
#include <QColor>
#include <QFileInfo>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QMessageBox>
#include <QPushButton>
#include <QSplitter>
#include <QTableWidget>
#include <QVBoxLayout>

#include <algorithm>
#include <set>

#include "common/error_dialog.h"
#include "common/page_heading.h"
#include "rptq/base/error.h"
#include "rptq/method/quant_config_json.h"
#include "session/loaded_model.h"
#include "session/session.h"

namespace rptq::ui {

namespace {
enum Column { WhenColumn, KindColumn, SettingColumn, DataColumn, PplFpColumn, PplQColumn, KlColumn, Top1Column,
              ColumnCount };
constexpr int kRunIndexRole = Qt::UserRole;
constexpr int kSortRole = Qt::UserRole + 1;

// Sorts by kSortRole when set (numbers as numbers), else by text.
class RunItem : public QTableWidgetItem {
 public:
  using QTableWidgetItem::QTableWidgetItem;
  bool operator<(const QTableWidgetItem& o) const override {
    const QVariant a = data(kSortRole), b = o.data(kSortRole);
    if (a.isValid() && b.isValid()) return a.toDouble() < b.toDouble();
    if (a.isValid() != b.isValid()) return b.isValid();  // empty cells first
    return text() < o.text();
  }
};

QString json_text(const nlohmann::json& v) {
  if (v.is_string()) return QString::fromStdString(v.get<std::string>());
  if (v.is_number_float()) return QString::number(v.get<double>(), 'g', 8);
  if (v.is_array()) {
    QStringList parts;
    for (const auto& x : v) parts << json_text(x);
    return parts.join(QStringLiteral(", "));
  }
  return QString::fromStdString(v.dump());
}

// The fields shown side by side, in order: (label, value) of one run.
std::vector<std::pair<QString, QString>> fields(const rptq::RunRecord& r) {
  std::vector<std::pair<QString, QString>> f;
  f.emplace_back(QObject::tr("Kind"), QString::fromStdString(r.kind));
  f.emplace_back(QObject::tr("When (UTC)"), QString::fromStdString(r.created));
  f.emplace_back(QObject::tr("Run id"), QString::fromStdString(r.id));
  const nlohmann::json s = rptq::quant_config_json(r.setting);
  f.emplace_back(QObject::tr("Setting"), QString::fromStdString(r.setting.name));
  f.emplace_back(QObject::tr("Weights"), QStringLiteral("%1-bit %2").arg(r.setting.wbits).arg(json_text(s["weights"])));
  for (const auto& [tap, bits] : s["abits"].items())
    f.emplace_back(QObject::tr("Bits %1").arg(QString::fromStdString(tap)), json_text(bits));
  for (const auto& [index, k] : s["clusters"].items())
    f.emplace_back(QObject::tr("Clusters %1").arg(QString::fromStdString(index)), json_text(k));
  f.emplace_back(QObject::tr("Grid"), json_text(s["grid"]));
  f.emplace_back(QObject::tr("Overrides"), json_text(s["overrides"]));
  f.emplace_back(QObject::tr("Statistics"), QString::fromStdString(r.stats));
  for (const auto& [k, v] : r.options.items()) f.emplace_back(QString::fromStdString(k), json_text(v));
  for (const auto& [k, v] : r.results.items()) f.emplace_back(QString::fromStdString(k), json_text(v));
  return f;
}
}  // namespace

HistoryPage::HistoryPage(Session* session, QWidget* parent) : QWidget(parent), session_(session) {
  auto* root = new QVBoxLayout(this);
  root->addWidget(page_heading(tr("History")));
  auto* intro = new QLabel(tr("Every quantization and comparison of this model, from the workbench and from "
                              "<tt>rptq</tt>, with its whole setting and results. Select two runs to see them side by "
                              "side; re-open a run's setting in the Quantize step."));
  intro->setWordWrap(true);
  root->addWidget(intro);
  status_ = new QLabel;
  status_->setObjectName(QStringLiteral("historyStatus"));
  status_->setWordWrap(true);
  status_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  root->addWidget(status_);

  auto* split = new QSplitter(Qt::Vertical);
  table_ = new QTableWidget(0, ColumnCount);
  table_->setObjectName(QStringLiteral("historyTable"));
  table_->setHorizontalHeaderLabels({tr("When (UTC)"), tr("Kind"), tr("Setting"), tr("Data"), tr("PPL FP"),
                                     tr("PPL quantized"), tr("KL"), tr("Top-1")});
  table_->verticalHeader()->hide();
  table_->setEditTriggers(QAbstractItemView::NoEditTriggers);
  table_->setSelectionBehavior(QAbstractItemView::SelectRows);
  table_->setSelectionMode(QAbstractItemView::ExtendedSelection);
  table_->setSortingEnabled(true);
  table_->horizontalHeader()->setSectionResizeMode(SettingColumn, QHeaderView::Stretch);
  for (int c : {WhenColumn, KindColumn, DataColumn, PplFpColumn, PplQColumn, KlColumn, Top1Column})
    table_->horizontalHeader()->setSectionResizeMode(c, QHeaderView::ResizeToContents);
  split->addWidget(table_);
  pair_ = new QTableWidget(0, 3);
  pair_->setObjectName(QStringLiteral("historyPair"));
  pair_->setHorizontalHeaderLabels({tr("Field"), tr("Run A"), tr("Run B")});
  pair_->verticalHeader()->hide();
  pair_->setEditTriggers(QAbstractItemView::NoEditTriggers);
  pair_->horizontalHeader()->setSectionResizeMode(0, QHeaderView::ResizeToContents);
  pair_->horizontalHeader()->setSectionResizeMode(1, QHeaderView::Stretch);
  pair_->horizontalHeader()->setSectionResizeMode(2, QHeaderView::Stretch);
  split->addWidget(pair_);
  split->setStretchFactor(0, 1);
  split->setStretchFactor(1, 1);
  root->addWidget(split, 1);

  auto* row = new QHBoxLayout;
  reopen_ = new QPushButton(tr("Re-open setting in Quantize"));
  reopen_->setObjectName(QStringLiteral("reopenRunButton"));
  delete_ = new QPushButton(tr("Delete"));
  delete_->setObjectName(QStringLiteral("deleteRunButton"));
  auto* refresh = new QPushButton(tr("Reload"));
  row->addWidget(reopen_);
  row->addWidget(delete_);
  row->addStretch(1);
  row->addWidget(refresh);
  root->addLayout(row);

  connect(table_, &QTableWidget::itemSelectionChanged, this, &HistoryPage::show_pair);
  connect(refresh, &QPushButton::clicked, this, &HistoryPage::reload);
  connect(reopen_, &QPushButton::clicked, this, [this] {
    const auto sel = selected();
    if (sel.size() == 1) Q_EMIT reopen_requested(sel.front()->setting);
  });
  connect(delete_, &QPushButton::clicked, this, [this] {
    const auto sel = selected();
    if (sel.empty() || session_->history_file().isEmpty()) return;
    std::vector<std::string> ids;
    for (const rptq::RunRecord* r : sel) ids.push_back(r->id);
    try {
      for (const std::string& id : ids) session_->history().remove(id);
    } catch (const std::exception& e) {
      show_error(window(), tr("Cannot change the run history"), QString::fromStdString(e.what()));
    }
    reload();
  });
  connect(session_, &Session::model_changed, this, &HistoryPage::reload);
  connect(session_, &Session::run_recorded, this, &HistoryPage::reload);
  reload();
}

void HistoryPage::reload() {
  runs_.clear();
  const LoadedModel* m = session_->model();
  QString note;
  try {
    if (session_->history_file().isEmpty()) throw rptq::InputError("the run history is off (RPTQ_HISTORY=off)");
    const std::vector<rptq::RunRecord> all = session_->history().load();
    if (m) runs_ = rptq::RunHistory::of_model(all, m->path.toStdString());
    const QString count = runs_.size() == 1 ? tr("1 run") : tr("%1 runs").arg(runs_.size());
    note = m ? tr("%1 of %2 in %3.").arg(count, m->display_name(), session_->history_file())
             : tr("Open a model to see its runs.");
  } catch (const std::exception& e) {
    note = QStringLiteral("<span style='color:#c62828'>%1</span>").arg(QString::fromStdString(e.what()).toHtmlEscaped());
  }
  if (!session_->history_error().isEmpty())
    note += QStringLiteral("<br><span style='color:#c62828'>%1</span>")
                .arg(tr("The last run was not recorded: %1").arg(session_->history_error()).toHtmlEscaped());
  status_->setText(note);

  table_->setSortingEnabled(false);
  table_->clearSelection();
  table_->setRowCount(static_cast<int>(runs_.size()));
  for (int i = 0; i < static_cast<int>(runs_.size()); ++i) {
    const rptq::RunRecord& r = runs_[static_cast<std::size_t>(i)];
    auto put = [&](int col, const QString& text, const QVariant& sort = {}) {
      auto* it = new RunItem(text);
      it->setData(kRunIndexRole, i);
      if (sort.isValid()) {
        it->setData(kSortRole, sort);
        it->setTextAlignment(Qt::AlignRight | Qt::AlignVCenter);
      }
      table_->setItem(i, col, it);
    };
    auto number = [&](const char* key, int col, int decimals, double scale = 1.0) {
      if (r.results.contains(key) && r.results[key].is_number()) {
        const double v = r.results[key].get<double>() * scale;
        put(col, QString::number(v, 'f', decimals), v);
      } else {
        put(col, QString());
      }
    };
    put(WhenColumn, QString::fromStdString(r.created));
    put(KindColumn, QString::fromStdString(r.kind));
    auto* setting = new RunItem(QString::fromStdString(r.setting.describe()));
    setting->setData(kRunIndexRole, i);
    setting->setToolTip(setting->text());
    table_->setItem(i, SettingColumn, setting);
    QStringList data;
    if (r.options.contains("data") && r.options["data"].is_array())
      for (const auto& d : r.options["data"])
        if (d.is_string()) data << QFileInfo(QString::fromStdString(d.get<std::string>())).fileName();
    put(DataColumn, data.join(QStringLiteral(", ")));
    number("ppl_fp", PplFpColumn, 3);
    number(r.results.contains("ppl_q") ? "ppl_q" : "ppl", PplQColumn, 3);
    number("kl", KlColumn, 5);
    number("top1_agreement", Top1Column, 2, 100.0);
  }
  table_->setSortingEnabled(true);
  table_->sortItems(WhenColumn, Qt::DescendingOrder);  // newest first
  show_pair();
  Q_EMIT runs_changed();
}

const rptq::RunRecord* HistoryPage::run_at_row(int row) const {
  const QTableWidgetItem* it = table_->item(row, WhenColumn);
  if (!it) return nullptr;
  const int i = it->data(kRunIndexRole).toInt();
  return i >= 0 && i < static_cast<int>(runs_.size()) ? &runs_[static_cast<std::size_t>(i)] : nullptr;
}

void HistoryPage::select_runs(const std::vector<int>& indices) {
  table_->clearSelection();
  for (int row = 0; row < table_->rowCount(); ++row) {
    const int i = table_->item(row, WhenColumn)->data(kRunIndexRole).toInt();
    if (std::find(indices.begin(), indices.end(), i) != indices.end())
      table_->selectionModel()->select(table_->model()->index(row, 0),
                                       QItemSelectionModel::Select | QItemSelectionModel::Rows);
  }
}

std::vector<const rptq::RunRecord*> HistoryPage::selected() const {
  std::set<int> rows;
  for (const QModelIndex& i : table_->selectionModel()->selectedRows()) rows.insert(i.row());
  std::vector<const rptq::RunRecord*> out;
  for (int row : rows)
    if (const rptq::RunRecord* r = run_at_row(row)) out.push_back(r);
  return out;
}

void HistoryPage::show_pair() {
  const auto sel = selected();
  reopen_->setEnabled(sel.size() == 1);
  delete_->setEnabled(!sel.empty());
  pair_->setRowCount(0);
  if (sel.empty()) return;
  const auto a = fields(*sel[0]);
  const auto b = sel.size() >= 2 ? fields(*sel[1]) : decltype(a){};
  pair_->setColumnHidden(2, sel.size() < 2);
  // Rows: A's fields in order, then B's that A lacks.
  std::vector<QString> labels;
  for (const auto& [k, v] : a) labels.push_back(k);
  for (const auto& [k, v] : b)
    if (std::find(labels.begin(), labels.end(), k) == labels.end()) labels.push_back(k);
  auto value = [](const std::vector<std::pair<QString, QString>>& f, const QString& k) {
    for (const auto& [key, v] : f)
      if (key == k) return v;
    return QString();
  };
  pair_->setRowCount(static_cast<int>(labels.size()));
  const QBrush differs(QColor(0xff, 0xf3, 0xc4));
  for (int i = 0; i < static_cast<int>(labels.size()); ++i) {
    const QString& k = labels[static_cast<std::size_t>(i)];
    const QString va = value(a, k), vb = value(b, k);
    pair_->setItem(i, 0, new QTableWidgetItem(k));
    pair_->setItem(i, 1, new QTableWidgetItem(va));
    pair_->setItem(i, 2, new QTableWidgetItem(vb));
    const bool diff = sel.size() >= 2 && va != vb && k != QStringLiteral("Run id") && k != QStringLiteral("When (UTC)");
    for (int c = 0; c < 3; ++c) {
      pair_->item(i, c)->setToolTip(c == 0 ? k : pair_->item(i, c)->text());
      if (diff) pair_->item(i, c)->setBackground(differs);
    }
  }
}

}  // namespace rptq::ui
