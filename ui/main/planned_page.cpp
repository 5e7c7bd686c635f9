#include "main/planned_page.h"

#include <QLabel>
#include <QVBoxLayout>

namespace rptq::ui {

PlannedPage::PlannedPage(const QString& title, const QString& what, const QString& cli, QWidget* parent)
    : QWidget(parent) {
  auto* l = new QVBoxLayout(this);
  auto* h = new QLabel(title);
  QFont f = h->font();
  f.setPointSizeF(f.pointSizeF() * 1.5);
  f.setBold(true);
  h->setFont(f);
  l->addWidget(h);
  auto* body = new QLabel(what);
  body->setWordWrap(true);
  l->addWidget(body);
  auto* note = new QLabel(tr("<p>This step is not in the workbench yet. Today the command line does it:</p>"
                             "<pre>%1</pre>")
                              .arg(cli.toHtmlEscaped()));
  note->setWordWrap(true);
  note->setTextInteractionFlags(Qt::TextSelectableByMouse);
  l->addWidget(note);
  l->addStretch(1);
}

}  // namespace rptq::ui
