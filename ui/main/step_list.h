#pragma once
// The workflow as steps down the side of the window: Model, Calibrate, Explore, Sensitivity, Quantize, Compare,
// Export. A step
// is enabled once what it needs exists and shows a check mark when its work is done.
#include <QListWidget>

namespace rptq::ui {

class StepList : public QListWidget {
  Q_OBJECT
 public:
  explicit StepList(const QStringList& names, QWidget* parent = nullptr);
  void set_step_enabled(int step, bool enabled);
  void set_step_done(int step, bool done);
  void set_step_note(int step, const QString& note);  // a short second line ("tiny-opt-16m", "planned")
  bool step_enabled(int step) const;
  QSize sizeHint() const override;

 private:
  void refresh(int step);
  QStringList names_;
  QList<bool> done_;
  QStringList notes_;
};

}  // namespace rptq::ui
