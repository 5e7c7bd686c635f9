#pragma once
// The compute device a job of the Calibrate or Compare step runs on: "CPU (N threads)" or "GPU: <name>". The GPU
// entry is always listed; while no usable GPU is found it is disabled and its tooltip and the note beside it say
// why (CUDA support not compiled in, no driver, no supported GPU). Probing starts the CUDA runtime, so it runs off
// the UI thread; until it answers the CPU is chosen. The choice ("cpu" / "cuda") is kept in QSettings under the
// given key, and a saved GPU choice is kept (and used again) across starts on which the GPU is unavailable.
#include <QString>
#include <QWidget>

#include "rptq/execution.h"

class QComboBox;
class QLabel;

namespace rptq::ui {

// What the probe found: the first GPU the kernels run on, or why there is none.
struct GpuAvailability {
  bool usable = false;
  int device = -1;  // CUDA device ordinal (rptq::GpuOptions::device) when usable
  QString name;    // as the driver reports it, e.g. "NVIDIA H100 80GB HBM3"
  QString reason;  // why usable is false; empty otherwise
};

// Never throws; may take a while (it starts the CUDA runtime): call it off the UI thread.
GpuAvailability probe_gpu_availability();
// The same answer for a given device list (the first supported GPU, whatever its ordinal).
GpuAvailability gpu_availability(const rptq::DeviceInfo& info);

class DeviceChoice : public QWidget {
  Q_OBJECT
 public:
  enum Entry { CpuEntry, GpuEntry };

  // settings_key: where the choice is kept, e.g. "calibration/device".
  explicit DeviceChoice(const QString& settings_key, QWidget* parent = nullptr);

  bool probed() const { return probed_; }
  const GpuAvailability& gpu() const { return gpu_; }
  rptq::Device device() const;  // what the next job runs on
  int gpu_device() const { return gpu_.device; }
  // What a job runs with: the chosen device, and on the GPU the probed one's ordinal.
  rptq::Execution execution() const;
  QString preference() const { return preferred_; }  // "cpu" or "cuda", as saved

  QComboBox* combo() const { return combo_; }
  QLabel* note() const { return note_; }

 public Q_SLOTS:
  // rptq::set_num_threads' value (0: all cores), for the CPU entry's text.
  void set_cpu_threads(int threads);
  // What the probe found; called by it (and by tests standing in for a GPU). Selects the GPU when it was the saved
  // choice and is usable, the CPU when the GPU is chosen but unusable.
  void set_gpu(const rptq::ui::GpuAvailability& gpu);

 Q_SIGNALS:
  void gpu_probed();
  void device_changed(rptq::Device device);

 private:
  void select(Entry e);

  QString key_;
  QString preferred_;
  GpuAvailability gpu_;
  bool probed_ = false;
  bool selecting_ = false;  // select() is changing the combo, not the user
  QComboBox* combo_;
  QLabel* note_;
};

}  // namespace rptq::ui
