#include "session/loaded_model.h"

#include <QFileInfo>

namespace rptq::ui {

QString LoadedModel::display_name() const { return QFileInfo(path).fileName(); }

}  // namespace rptq::ui
