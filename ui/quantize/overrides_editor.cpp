#include "quantize/overrides_editor.h"

#include <QBrush>
#include <QColor>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QLabel>
#include <QPushButton>
#include <QTableWidget>
#include <QVBoxLayout>

#include "rptq/method/quant_config.h"

namespace rptq::ui {

namespace {
enum Column { LayersColumn, TapsColumn, SetColumn, ColumnCount };

bool is_all(const QString& s) {
  const QString t = s.trimmed();
  return t.isEmpty() || t.compare(QStringLiteral("all"), Qt::CaseInsensitive) == 0;
}
}  // namespace

OverridesEditor::OverridesEditor(QWidget* parent) : QWidget(parent) {
  auto* root = new QVBoxLayout(this);
  root->setContentsMargins(0, 0, 0, 0);
  table_ = new QTableWidget(0, ColumnCount);
  table_->setObjectName(QStringLiteral("overridesTable"));
  table_->setHorizontalHeaderLabels({tr("Layers"), tr("Taps"), tr("Set")});
  table_->horizontalHeaderItem(LayersColumn)->setToolTip(tr("all, or a list such as 0-3+7"));
  table_->horizontalHeaderItem(TapsColumn)
      ->setToolTip(tr("all (every tap but K and V), or a comma list of attn_input, q, attn_output, ffn_input, "
                      "ffn_hidden, R1..R5"));
  table_->horizontalHeaderItem(SetColumn)
      ->setToolTip(tr("a comma list of abits=N, wbits=N, clusters=N (R1, R4, R5), dynamic, per-token, static; "
                      "16 bits keeps them in float"));
  table_->verticalHeader()->hide();
  table_->horizontalHeader()->setSectionResizeMode(LayersColumn, QHeaderView::ResizeToContents);
  table_->horizontalHeader()->setSectionResizeMode(TapsColumn, QHeaderView::Stretch);
  table_->horizontalHeader()->setSectionResizeMode(SetColumn, QHeaderView::Stretch);
  table_->setSelectionBehavior(QAbstractItemView::SelectRows);
  table_->setMinimumHeight(90);
  table_->setMaximumHeight(170);  // the result table below needs the room
  root->addWidget(table_);
  auto* row = new QHBoxLayout;
  add_ = new QPushButton(tr("Add override"));
  add_->setObjectName(QStringLiteral("addOverrideButton"));
  remove_ = new QPushButton(tr("Remove"));
  remove_->setObjectName(QStringLiteral("removeOverrideButton"));
  hint_ = new QLabel;
  hint_->setObjectName(QStringLiteral("overridesHint"));
  hint_->setWordWrap(true);
  row->addWidget(add_);
  row->addWidget(remove_);
  row->addWidget(hint_, 1);
  root->addLayout(row);

  connect(add_, &QPushButton::clicked, this, [this] {
    add_row(QStringLiteral("0"), QStringLiteral("ffn_hidden"), QStringLiteral("abits=16"));
    table_->setCurrentCell(table_->rowCount() - 1, LayersColumn);
    validate();
    Q_EMIT changed();
  });
  connect(remove_, &QPushButton::clicked, this, [this] {
    const int r = table_->currentRow();
    if (r < 0) return;
    table_->removeRow(r);
    validate();
    Q_EMIT changed();
  });
  connect(table_, &QTableWidget::itemChanged, this, [this] {
    if (filling_) return;
    validate();
    Q_EMIT changed();
  });
  validate();
}

QString OverridesEditor::spec_of(const QString& layers, const QString& taps, const QString& set) {
  QStringList select;
  if (!is_all(layers)) select << QStringLiteral("layers=") + layers.trimmed();
  if (!is_all(taps)) select << taps.trimmed();
  const QString s = set.trimmed();
  return select.isEmpty() ? s : select.join(QLatin1Char(',')) + QLatin1Char(':') + s;
}

void OverridesEditor::split_spec(const QString& spec, QString& layers, QString& taps, QString& set) {
  const qsizetype colon = spec.indexOf(QLatin1Char(':'));
  set = colon < 0 ? spec : spec.mid(colon + 1);
  layers = QStringLiteral("all");
  QStringList tap_parts;
  if (colon >= 0)
    for (const QString& part : spec.left(colon).split(QLatin1Char(','), Qt::SkipEmptyParts)) {
      if (part.startsWith(QStringLiteral("layers="), Qt::CaseInsensitive))
        layers = part.mid(7);
      else
        tap_parts << part;
    }
  taps = tap_parts.isEmpty() ? QStringLiteral("all") : tap_parts.join(QLatin1Char(','));
}

QStringList OverridesEditor::specs() const {
  QStringList out;
  for (int r = 0; r < table_->rowCount(); ++r) {
    auto text = [&](int c) { return table_->item(r, c) ? table_->item(r, c)->text() : QString(); };
    if (text(SetColumn).trimmed().isEmpty() && is_all(text(LayersColumn)) && is_all(text(TapsColumn))) continue;
    out << spec_of(text(LayersColumn), text(TapsColumn), text(SetColumn));
  }
  return out;
}

void OverridesEditor::set_specs(const QStringList& specs) {
  filling_ = true;
  table_->setRowCount(0);
  for (const QString& s : specs) {
    QString layers, taps, set;
    split_spec(s, layers, taps, set);
    add_row(layers, taps, set);
  }
  filling_ = false;
  validate();
  Q_EMIT changed();
}

void OverridesEditor::add_row(const QString& layers, const QString& taps, const QString& set) {
  const bool was = filling_;
  filling_ = true;
  const int r = table_->rowCount();
  table_->insertRow(r);
  table_->setItem(r, LayersColumn, new QTableWidgetItem(layers));
  table_->setItem(r, TapsColumn, new QTableWidgetItem(taps));
  table_->setItem(r, SetColumn, new QTableWidgetItem(set));
  filling_ = was;
}

void OverridesEditor::validate() {
  const bool was = filling_;
  filling_ = true;  // colouring the cells changes the items
  error_.clear();
  for (int r = 0; r < table_->rowCount(); ++r) {
    auto text = [&](int c) { return table_->item(r, c) ? table_->item(r, c)->text() : QString(); };
    const QString spec = spec_of(text(LayersColumn), text(TapsColumn), text(SetColumn));
    QString why;
    try {
      (void)rptq::parse_override(spec.toStdString());
    } catch (const std::exception& e) {
      why = QString::fromStdString(e.what());
    }
    if (!why.isEmpty() && error_.isEmpty()) error_ = tr("Row %1: %2").arg(r + 1).arg(why);
    for (int c = 0; c < ColumnCount; ++c) {
      QTableWidgetItem* it = table_->item(r, c);
      if (!it) continue;
      it->setBackground(why.isEmpty() ? QBrush() : QBrush(QColor(0xff, 0xeb, 0xee)));
      it->setToolTip(why.isEmpty() ? tr("--override \"%1\"").arg(spec) : why);
    }
  }
  filling_ = was;
  remove_->setEnabled(table_->rowCount() > 0);
  hint_->setText(error_.isEmpty()
                     ? (table_->rowCount() == 0   ? tr("No overrides: every layer gets the setting above.")
                        : table_->rowCount() == 1 ? tr("1 override.")
                                                  : tr("%1 overrides; a later row wins where two select the same tap.")
                                                        .arg(table_->rowCount()))
                     : QStringLiteral("<span style='color:#c62828'>%1</span>").arg(error_.toHtmlEscaped()));
}

}  // namespace rptq::ui
