#include "main/step_list.h"

namespace rptq::ui {

StepList::StepList(const QStringList& names, QWidget* parent) : QListWidget(parent), names_(names) {
  setObjectName(QStringLiteral("stepList"));
  done_.fill(false, names.size());
  for (int i = 0; i < names.size(); ++i) notes_ << QString();
  setSpacing(2);
  setUniformItemSizes(false);  // a step with a note is two lines tall, one without is one
  setHorizontalScrollBarPolicy(Qt::ScrollBarAlwaysOff);
  setStyleSheet(QStringLiteral(
      "QListWidget#stepList { border: none; background: palette(window); outline: 0; }"
      "QListWidget#stepList::item { padding: 8px 10px; border-radius: 4px; }"
      "QListWidget#stepList::item:selected { background: #2f6fb5; color: white; }"
      "QListWidget#stepList::item:disabled { color: #9a9a9a; }"));
  for (int i = 0; i < names.size(); ++i) {
    addItem(QString());
    refresh(i);
  }
}

QSize StepList::sizeHint() const {
  int w = 0;
  for (int i = 0; i < count(); ++i) w = std::max(w, fontMetrics().horizontalAdvance(item(i)->text()) + 40);
  return QSize(std::max(170, w), QListWidget::sizeHint().height());
}

void StepList::refresh(int step) {
  QListWidgetItem* it = item(step);
  if (!it) return;
  QString text = QStringLiteral("%1   %2%3").arg(step + 1).arg(names_[step], done_[step] ? QStringLiteral("  \u2714") : QString());
  if (!notes_[step].isEmpty()) text += QLatin1Char('\n') + QStringLiteral("      ") + notes_[step];
  it->setText(text);
}

void StepList::set_step_enabled(int step, bool enabled) {
  QListWidgetItem* it = item(step);
  if (!it) return;
  it->setFlags(enabled ? (Qt::ItemIsEnabled | Qt::ItemIsSelectable) : Qt::NoItemFlags);
}

bool StepList::step_enabled(int step) const {
  const QListWidgetItem* it = item(step);
  return it && (it->flags() & Qt::ItemIsEnabled);
}

void StepList::set_step_done(int step, bool done) {
  if (step < 0 || step >= done_.size()) return;
  done_[step] = done;
  refresh(step);
}

void StepList::set_step_note(int step, const QString& note) {
  if (step < 0 || step >= notes_.size()) return;
  QFontMetrics fm(font());
  notes_[step] = fm.elidedText(note, Qt::ElideMiddle, 200);
  refresh(step);
}

}  // namespace rptq::ui
