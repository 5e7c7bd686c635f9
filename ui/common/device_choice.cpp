#include "common/device_choice.h"

#include <QComboBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QSettings>
#include <QStandardItemModel>
#include <QThread>

#include "common/task.h"

namespace rptq::ui {

GpuAvailability probe_gpu_availability() { return gpu_availability(rptq::device_info()); }

GpuAvailability gpu_availability(const rptq::DeviceInfo& info) {
  GpuAvailability g;
  const int first = info.first_usable_gpu();  // the one the status bar names
  if (const rptq::GpuInfo* gpu = info.gpu(first)) {
    g.usable = true;
    g.device = first;
    g.name = QString::fromStdString(gpu->name);
    return g;
  }
  g.reason = QString::fromStdString(info.unavailable_reason);
  if (g.reason.isEmpty()) g.reason = QStringLiteral("no usable GPU found");
  return g;
}

DeviceChoice::DeviceChoice(const QString& settings_key, QWidget* parent)
    : QWidget(parent), key_(settings_key), combo_(new QComboBox), note_(new QLabel) {
  preferred_ = QSettings().value(key_, QStringLiteral("cpu")).toString() == QLatin1String("cuda")
                   ? QStringLiteral("cuda")
                   : QStringLiteral("cpu");
  combo_->setObjectName(QStringLiteral("deviceCombo"));
  note_->setObjectName(QStringLiteral("deviceNote"));
  note_->setStyleSheet(QStringLiteral("QLabel { color: #707070; }"));
  note_->setWordWrap(true);
  auto* l = new QHBoxLayout(this);
  l->setContentsMargins(0, 0, 0, 0);
  l->addWidget(combo_);
  l->addWidget(note_, 1);
  combo_->addItem(QString(), QStringLiteral("cpu"));
  combo_->addItem(tr("GPU: looking for one\u2026"), QStringLiteral("cuda"));
  set_cpu_threads(0);
  if (auto* m = qobject_cast<QStandardItemModel*>(combo_->model())) m->item(GpuEntry)->setEnabled(false);
  select(CpuEntry);
  connect(combo_, &QComboBox::currentIndexChanged, this, [this](int index) {
    if (selecting_ || index < 0) return;
    preferred_ = combo_->itemData(index).toString();
    QSettings().setValue(key_, preferred_);
    Q_EMIT device_changed(device());
  });
  run_task(
      this, nullptr, [] { return probe_gpu_availability(); },
      [this](const GpuAvailability& g) {
        if (!probed_) set_gpu(g);  // a test may have stood in for the probe meanwhile
      },
      [this](const TaskError& e) {
        GpuAvailability g;
        g.reason = e.message;
        if (!probed_) set_gpu(g);
      });
}

rptq::Execution DeviceChoice::execution() const {
  rptq::Execution e;
  e.device = device();
  if (e.device == rptq::Device::CUDA) e.gpu.device = gpu_.device;
  return e;
}

rptq::Device DeviceChoice::device() const {
  return combo_->currentIndex() == GpuEntry && gpu_.usable ? rptq::Device::CUDA : rptq::Device::CPU;
}

void DeviceChoice::set_cpu_threads(int threads) {
  const int n = threads > 0 ? threads : QThread::idealThreadCount();
  combo_->setItemText(CpuEntry, n == 1 ? tr("CPU (1 thread)") : tr("CPU (%1 threads)").arg(n));
}

void DeviceChoice::set_gpu(const GpuAvailability& gpu) {
  gpu_ = gpu;
  probed_ = true;
  if (auto* m = qobject_cast<QStandardItemModel*>(combo_->model())) m->item(GpuEntry)->setEnabled(gpu_.usable);
  if (gpu_.usable) {
    combo_->setItemText(GpuEntry, tr("GPU: %1").arg(gpu_.name));
    combo_->setItemData(GpuEntry,
                        tr("CUDA device %1; the decoder layers stay on it when they fit in its memory, else they "
                           "are streamed to it one at a time")
                            .arg(gpu_.device),
                        Qt::ToolTipRole);
    note_->clear();
    note_->setToolTip(QString());
  } else {
    combo_->setItemText(GpuEntry, tr("GPU: unavailable"));
    combo_->setItemData(GpuEntry, tr("No GPU: %1").arg(gpu_.reason), Qt::ToolTipRole);
    note_->setText(tr("GPU unavailable: %1").arg(gpu_.reason));
    note_->setToolTip(gpu_.reason);
  }
  select(preferred_ == QLatin1String("cuda") && gpu_.usable ? GpuEntry : CpuEntry);
  Q_EMIT gpu_probed();
}

void DeviceChoice::select(Entry e) {
  if (combo_->currentIndex() == e) return;
  selecting_ = true;
  combo_->setCurrentIndex(e);
  selecting_ = false;
  Q_EMIT device_changed(device());
}

}  // namespace rptq::ui
