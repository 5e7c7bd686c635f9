#pragma once
// The Compare step: the FP model and its quantized version side by side. (a) Perplexity, KL divergence and top-1
// agreement on a chosen text (the bundled sample by default; a few short windows, so it takes seconds), on the CPU
// or a GPU, with tokens/s and weight memory; (b) both continuing one prompt with the same greedy decoding (on the
// CPU), streamed into two panes, the first token where they differ highlighted in both; (c) the memory chart of
// weights and KV cache over batch and sequence length, FP16 against the chosen quantization.
#include <QWidget>

#include <memory>
#include <optional>
#include <vector>

#include "common/job_progress.h"
#include "rptq/eval/compare.h"
#include "rptq/eval/generate.h"
#include "rptq/execution.h"
#include "rptq/method/quant_config.h"

class QLabel;
class QLineEdit;
class QProgressBar;
class QPushButton;
class QSpinBox;
class QTableWidget;
class QTextEdit;
class QTimer;

namespace rptq::ui {

class DeviceChoice;
class GenerationJob;
class MemoryChart;
class Session;
struct TaskError;

class ComparePage : public QWidget {
  Q_OBJECT
 public:
  explicit ComparePage(Session* session, QWidget* parent = nullptr);
  ~ComparePage() override;

  enum MetricRow { PerplexityRow, KlRow, Top1Row, TokensPerSecondRow, WeightMemoryRow, WindowsRow, MetricRows };
  bool comparing() const { return comparing_ != nullptr; }
  bool generating() const;
  // The first text's comparison (what the metrics table shows), and every text's, in the order of the texts.
  const std::optional<rptq::CompareResult>& result() const { return result_; }
  const std::vector<rptq::CompareResult>& text_results() const { return results_; }
  // The evaluation texts: the Texts field's paths, separated by ";" (default: the bundled WikiText-2 and C4
  // samples, as the paper's tables compare on several texts).
  QStringList texts() const;
  // The per-text table: one row per text (text, PPL FP, PPL quantized, change, KL mean, p50, p90, p99, max, top-1
  // changed).
  QTableWidget* texts_table() const { return texts_table_; }
  enum TextColumn { TextNameColumn, TextPplFpColumn, TextPplQColumn, TextChangeColumn, TextKlColumn, TextP50Column,
                    TextP90Column, TextP99Column, TextMaxColumn, TextTop1ChangedColumn, TextColumns };
  // The token index where the two generations first differ (-1 while they agree).
  int divergence() const { return divergence_; }
  // Tokens each side (0 FP, 1 quantized) generated in the current or last generation.
  int generated_tokens(int side) const { return static_cast<int>(ids_[side].size()); }
  GenerationJob* generation_job() const { return gen_; }

  QLineEdit* data_edit() const { return data_edit_; }
  QSpinBox* windows_spin() const { return windows_; }
  QSpinBox* seqlen_spin() const { return seqlen_; }
  DeviceChoice* device_choice() const { return device_; }
  QPushButton* compare_button() const { return compare_; }
  QTableWidget* metrics_table() const { return table_; }
  QLineEdit* prompt_edit() const { return prompt_; }
  QSpinBox* new_tokens_spin() const { return new_tokens_; }
  QPushButton* generate_button() const { return generate_; }
  QPushButton* stop_button() const { return stop_; }
  QTextEdit* fp_pane() const { return panes_[0]; }
  QTextEdit* quantized_pane() const { return panes_[1]; }
  QLabel* generation_status() const { return gen_status_; }
  MemoryChart* memory_chart() const { return memory_; }

 Q_SIGNALS:
  void running_changed(bool running);

 public Q_SLOTS:
  void run_comparison();
  void run_generation();
  void stop();
  // The quantization the memory chart shows when nothing is quantized yet (the Quantize step's choice).
  void set_memory_config(const rptq::QuantConfig& config);

 private Q_SLOTS:
  void update_availability();
  void token(int side, int id, const QString& text);
  void side_finished(int side, const rptq::GenerateResult& r);
  void side_failed(int side, const rptq::ui::TaskError& e);

 private:
  void comparison_ended();  // the job's end, either way: its progress, the model's use and the busy state released
  void show_result();
  // Adds the comparison to the run history with the quantization it compared.
  void record(const rptq::Execution& exec);
  void show_texts();
  void find_divergence();
  void highlight(int side, int token);
  void set_busy();

  Session* session_;
  GenerationJob* gen_;
  QLabel* note_;
  QLineEdit* data_edit_;
  QSpinBox* windows_;
  QSpinBox* seqlen_;
  DeviceChoice* device_;
  QPushButton* compare_;
  QProgressBar* bar_;
  QLabel* status_;
  QTableWidget* table_;
  QLineEdit* prompt_;
  QSpinBox* new_tokens_;
  QPushButton* generate_;
  QPushButton* stop_;
  QLabel* pane_titles_[2];
  QTextEdit* panes_[2];
  QLabel* gen_status_;
  MemoryChart* memory_;
  QTimer* poll_;
  std::optional<rptq::QuantConfig> chosen_;
  std::optional<rptq::CompareResult> result_;
  std::vector<rptq::CompareResult> results_;  // per text
  QStringList result_texts_;                  // their paths
  QTableWidget* texts_table_;
  std::shared_ptr<JobProgress<LoadProgress>> comparing_;
  // Per side: the generated token ids and each token's [start, end) in its pane's text.
  std::vector<int> ids_[2];
  std::vector<std::pair<int, int>> spans_[2];
  bool finished_[2] = {false, false};
  int divergence_ = -1;
  bool stopped_ = false;  // Stop was pressed during the current generation
};

}  // namespace rptq::ui
