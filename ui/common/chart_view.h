#pragma once
// A chart view with the interactions every chart of the workbench shares: wheel zoom around the cursor, rubber-band
// zoom (left drag), pan (middle drag, or Ctrl + left drag, or the arrow keys), reset (double click, Home), and a
// context menu to export the chart as PNG or SVG. OpenGL rendering of large series is optional (offscreen has none).
#include <QChartView>
#include <QPoint>
#include <QString>

namespace rptq::ui {

class ChartView : public QChartView {
  Q_OBJECT
 public:
  explicit ChartView(QChart* chart, QWidget* parent = nullptr);

  // Writes the chart to `path`: SVG when it ends in .svg (when built with Qt6Svg), else PNG (at twice the
  // widget's pixel size, for print). Returns false with `error` set when the file cannot be written.
  bool export_to(const QString& path, QString* error = nullptr);
  // Asks for a file name, then exports; reports failures in a dialog.
  void export_interactively();
  static bool svg_supported();

  // Whether OpenGL may be used for series with many points (the application-wide preference, see opengl_default).
  static bool opengl_enabled();
  static void set_opengl_enabled(bool on);
  // True when the platform can do OpenGL at all (not "offscreen" or "minimal").
  static bool opengl_available();

  QString export_name() const { return export_name_; }
  void set_export_name(const QString& name) { export_name_ = name; }

 Q_SIGNALS:
  void zoom_reset();

 public Q_SLOTS:
  void reset_zoom();

 protected:
  // Sets the axes back to the data's own ranges (what reset_zoom returns to); subclasses that set their axes do so.
  virtual void restore_home() {}
  void wheelEvent(QWheelEvent* e) override;
  void mousePressEvent(QMouseEvent* e) override;
  void mouseMoveEvent(QMouseEvent* e) override;
  void mouseReleaseEvent(QMouseEvent* e) override;
  void mouseDoubleClickEvent(QMouseEvent* e) override;
  void keyPressEvent(QKeyEvent* e) override;
  void contextMenuEvent(QContextMenuEvent* e) override;

 private:
  bool panning_ = false;
  QPoint last_pan_;
  QString export_name_ = QStringLiteral("chart");
};

}  // namespace rptq::ui
