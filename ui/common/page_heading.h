#pragma once
// The title at the top of each workflow step's page.
#include <QLabel>
#include <QString>

namespace rptq::ui {

// A label with `text` in bold at 1.5 times the font size (owned by whoever adds it to a layout).
QLabel* page_heading(const QString& text);

}  // namespace rptq::ui
