#include "explore/cluster_snapshot.h"

#include "rptq/base/error.h"

namespace rptq::ui {

QString index_title(int index) {
  switch (index) {
    case 1: return QStringLiteral("R1 attention input");
    case 2: return QStringLiteral("R2 queries and keys");
    case 3: return QStringLiteral("R3 values / attention output");
    case 4: return QStringLiteral("R4 FFN input");
    case 5: return QStringLiteral("R5 FFN hidden");
  }
  return QStringLiteral("R%1").arg(index);
}

ClusterSnapshot make_cluster_snapshot(const ClusterRequest& req) {
  if (!req.stats) throw rptq::InputError("no channel statistics");
  return ClusterSnapshot{
      rptq::cluster_view(*req.stats, req.layer, req.index, req.k, req.stat, req.bits, req.grid, req.seed), req};
}

}  // namespace rptq::ui
