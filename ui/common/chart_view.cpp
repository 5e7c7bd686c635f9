#include "common/chart_view.h"

#include <QAbstractSeries>
#include <QApplication>
#include <QChart>
#include <QContextMenuEvent>
#include <QFileDialog>
#include <QFileInfo>
#include <QGuiApplication>
#include <QImage>
#include <QKeyEvent>
#include <QMenu>
#include <QMouseEvent>
#include <QPainter>
#include <QSettings>
#include <QStandardPaths>
#include <QWheelEvent>
#ifdef RPTQ_UI_HAVE_SVG
#include <QSvgGenerator>
#endif

#include <cmath>
#include <vector>

#include "common/error_dialog.h"

namespace rptq::ui {

namespace {
const char* kOpenGlKey = "view/opengl";
const char* kExportDirKey = "paths/chartExportDir";
}  // namespace

ChartView::ChartView(QChart* chart, QWidget* parent) : QChartView(chart, parent) {
  setRenderHint(QPainter::Antialiasing, true);
  setRubberBand(QChartView::RectangleRubberBand);
  setFocusPolicy(Qt::StrongFocus);
  setMouseTracking(true);
  chart->setAnimationOptions(QChart::NoAnimation);
}

bool ChartView::svg_supported() {
#ifdef RPTQ_UI_HAVE_SVG
  return true;
#else
  return false;
#endif
}

bool ChartView::opengl_available() {
  const QString p = QGuiApplication::platformName();
  return p != QLatin1String("offscreen") && p != QLatin1String("minimal") && p != QLatin1String("vnc");
}

bool ChartView::opengl_enabled() {
  return opengl_available() && QSettings().value(kOpenGlKey, true).toBool();
}

void ChartView::set_opengl_enabled(bool on) { QSettings().setValue(kOpenGlKey, on); }

void ChartView::reset_zoom() {
  chart()->zoomReset();
  restore_home();
  Q_EMIT zoom_reset();
}

void ChartView::wheelEvent(QWheelEvent* e) {
  const double steps = e->angleDelta().y() / 120.0;
  if (steps == 0) return;
  const double factor = std::pow(1.25, steps);
  // Zoom around the cursor: scale the plot area about the point under the mouse.
  const QRectF plot = chart()->plotArea();
  const QPointF c = chart()->mapFromScene(mapToScene(e->position().toPoint()));
  if (!plot.contains(c)) return chart()->zoom(factor);
  QRectF r(0, 0, plot.width() / factor, plot.height() / factor);
  r.moveTopLeft(QPointF(c.x() - (c.x() - plot.left()) / factor, c.y() - (c.y() - plot.top()) / factor));
  chart()->zoomIn(r);
  e->accept();
}

void ChartView::mousePressEvent(QMouseEvent* e) {
  if (e->button() == Qt::MiddleButton || (e->button() == Qt::LeftButton && (e->modifiers() & Qt::ControlModifier))) {
    panning_ = true;
    last_pan_ = e->pos();
    setCursor(Qt::ClosedHandCursor);
    e->accept();
    return;
  }
  if (e->button() == Qt::RightButton) {  // the context menu, not QChartView's zoom out
    e->accept();
    return;
  }
  QChartView::mousePressEvent(e);
}

void ChartView::mouseMoveEvent(QMouseEvent* e) {
  if (panning_) {
    const QPoint d = e->pos() - last_pan_;
    last_pan_ = e->pos();
    chart()->scroll(-d.x(), d.y());
    e->accept();
    return;
  }
  QChartView::mouseMoveEvent(e);
}

void ChartView::mouseReleaseEvent(QMouseEvent* e) {
  if (panning_ && (e->button() == Qt::MiddleButton || e->button() == Qt::LeftButton)) {
    panning_ = false;
    unsetCursor();
    e->accept();
    return;
  }
  if (e->button() == Qt::RightButton) {
    e->accept();
    return;
  }
  QChartView::mouseReleaseEvent(e);
}

void ChartView::mouseDoubleClickEvent(QMouseEvent* e) {
  if (e->button() == Qt::LeftButton) {
    reset_zoom();
    e->accept();
    return;
  }
  QChartView::mouseDoubleClickEvent(e);
}

void ChartView::keyPressEvent(QKeyEvent* e) {
  const double step = 30;
  switch (e->key()) {
    case Qt::Key_Left: chart()->scroll(-step, 0); break;
    case Qt::Key_Right: chart()->scroll(step, 0); break;
    case Qt::Key_Up: chart()->scroll(0, step); break;
    case Qt::Key_Down: chart()->scroll(0, -step); break;
    case Qt::Key_Plus:
    case Qt::Key_Equal: chart()->zoom(1.25); break;
    case Qt::Key_Minus: chart()->zoom(0.8); break;
    case Qt::Key_Home:
    case Qt::Key_0: reset_zoom(); break;
    default: return QChartView::keyPressEvent(e);
  }
  e->accept();
}

void ChartView::contextMenuEvent(QContextMenuEvent* e) {
  QMenu menu(this);
  menu.addAction(tr("Reset zoom"), this, &ChartView::reset_zoom);
  menu.addSeparator();
  menu.addAction(tr("Export chart..."), this, &ChartView::export_interactively);
  menu.exec(e->globalPos());
}

bool ChartView::export_to(const QString& path, QString* error) {
  // OpenGL series draw into a GL surface over the view, not through QPainter: export them with the raster path.
  std::vector<QAbstractSeries*> gl;
  for (QAbstractSeries* s : chart()->series())
    if (s->useOpenGL()) {
      gl.push_back(s);
      s->setUseOpenGL(false);
    }
  bool ok = false;
  const QRect area = viewport()->rect();
  if (path.endsWith(QLatin1String(".svg"), Qt::CaseInsensitive)) {
#ifdef RPTQ_UI_HAVE_SVG
    QSvgGenerator svg;
    svg.setFileName(path);
    svg.setSize(area.size());
    svg.setViewBox(QRect(QPoint(0, 0), area.size()));
    svg.setTitle(export_name_);
    svg.setDescription(QStringLiteral("RPTQ Workbench chart"));
    QPainter p;
    if (p.begin(&svg)) {
      render(&p, QRectF(QPointF(0, 0), area.size()), area);
      ok = p.end();
    }
    if (!ok && error) *error = tr("could not write %1").arg(path);
#else
    if (error) *error = tr("SVG export needs Qt6Svg (qt6-svg-dev) at build time");
#endif
  } else {
    QImage img(area.size() * 2, QImage::Format_ARGB32_Premultiplied);
    img.setDevicePixelRatio(2.0);
    img.fill(Qt::white);
    {
      QPainter p(&img);
      p.setRenderHint(QPainter::Antialiasing);
      render(&p, QRectF(QPointF(0, 0), area.size()), area);
    }
    ok = img.save(path, "PNG");
    if (!ok && error) *error = tr("could not write %1").arg(path);
  }
  for (QAbstractSeries* s : gl) s->setUseOpenGL(true);
  return ok;
}

void ChartView::export_interactively() {
  QSettings settings;
  const QString dir = settings.value(kExportDirKey, QStandardPaths::writableLocation(QStandardPaths::PicturesLocation))
                          .toString();
  QString filters = tr("PNG image (*.png)");
  if (svg_supported()) filters += tr(";;SVG vector image (*.svg)");
  QString selected;
  QString path = QFileDialog::getSaveFileName(this, tr("Export chart"), dir + QLatin1Char('/') + export_name_ + ".png",
                                              filters, &selected);
  if (path.isEmpty()) return;
  if (QFileInfo(path).suffix().isEmpty()) path += selected.contains(QLatin1String("svg")) ? ".svg" : ".png";
  settings.setValue(kExportDirKey, QFileInfo(path).absolutePath());
  QString error;
  if (!export_to(path, &error)) show_error(this, tr("Cannot export the chart"), error);
}

}  // namespace rptq::ui
