#!/usr/bin/env bash
# Renders the icon's PNG sizes for the hicolor theme from the SVG (run after editing the SVG; the PNGs are
# committed, so building the package needs no SVG renderer). Needs rsvg-convert (Debian: librsvg2-bin).
set -euo pipefail
cd "$(dirname "$0")"
for N in 16 22 24 32 48 64 128 256; do
  mkdir -p "hicolor/${N}x${N}/apps"
  rsvg-convert -w "$N" -h "$N" io.github.rptq.Workbench.svg -o "hicolor/${N}x${N}/apps/io.github.rptq.Workbench.png"
done
