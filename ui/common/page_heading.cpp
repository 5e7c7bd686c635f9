#include "common/page_heading.h"

#include <QFont>

namespace rptq::ui {

QLabel* page_heading(const QString& text) {
  auto* l = new QLabel(text);
  QFont f = l->font();
  f.setPointSizeF(f.pointSizeF() * 1.5);
  f.setBold(true);
  l->setFont(f);
  return l;
}

}  // namespace rptq::ui
