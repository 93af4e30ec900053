// GFTI: live loss curve on "GFTI ES Optimize Step" nodes, and the text results of GFTI nodes.
// The server broadcasts `gfti.loss` per generation ({node, generation, best, mean, ...}) and once per step start
// ({node, history: {best, mean}}). ComfyUI dispatches a custom message type only if a listener for it was
// registered before it arrives, hence the listener in setup().
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const CHART_HEIGHT = 110;
const curves = new Map(); // node id (string) -> {best: number[], mean: number[]}

function onLoss(event) {
  const data = event.detail;
  if (!data || data.node == null) return;
  const id = String(data.node);
  if (data.history) {
    curves.set(id, { best: [...data.history.best], mean: [...data.history.mean] });
  } else {
    const curve = curves.get(id) ?? { best: [], mean: [] };
    curve.best.push(data.best);
    curve.mean.push(data.mean);
    curves.set(id, curve);
  }
  app.graph?.setDirtyCanvas(true, true);
}

// Each generation draws its own timesteps and noise, so a running minimum would only track the luckiest
// draw; the trailing average of the population mean shows the trend (same as gfti_core/chart.py).
const TREND_WINDOW = 10;

function trailingAverage(values) {
  let recent = [];
  return values.map((v) => {
    if (v != null && Number.isFinite(v)) recent = [...recent, v].slice(-TREND_WINDOW);
    return recent.length ? recent.reduce((a, b) => a + b, 0) / recent.length : null;
  });
}

function drawCurve(ctx, node, curve) {
  const series = [["mean", curve.mean, "#8899bb"], ["best", curve.best, "#4a7fe0"],
                  ["trend", trailingAverage(curve.mean), "#e8663a"]];
  const finite = series.flatMap(([, s]) => s).filter((v) => v != null && Number.isFinite(v));
  if (!finite.length) return;
  const x0 = 10, w = node.size[0] - 20, y0 = node.size[1] - CHART_HEIGHT - 6, h = CHART_HEIGHT - 18;
  let lo = Math.min(...finite), hi = Math.max(...finite);
  if (hi <= lo) hi = lo + 1e-6;
  const n = Math.max(2, curve.best.length);
  ctx.save();
  ctx.fillStyle = "#1b1b1b";
  ctx.fillRect(x0, y0, w, CHART_HEIGHT);
  for (const [, values, color] of series) {
    ctx.strokeStyle = color;
    ctx.beginPath();
    values.forEach((v, i) => {
      if (v == null || !Number.isFinite(v)) return;
      const x = x0 + (w * i) / (n - 1), y = y0 + 4 + h * (1 - (v - lo) / (hi - lo));
      i === 0 ? ctx.moveTo(x, y) : ctx.lineTo(x, y);
    });
    ctx.stroke();
  }
  ctx.fillStyle = "#ccc";
  ctx.font = "10px sans-serif";
  const trend = trailingAverage(curve.mean).at(-1);
  ctx.fillText(`gen ${curve.best.length}  trend ${trend?.toPrecision(5)}  (${lo.toPrecision(4)}…${hi.toPrecision(4)})`,
               x0 + 4, y0 + CHART_HEIGHT - 4);
  ctx.restore();
}

function drawText(ctx, node, lines) {
  ctx.save();
  ctx.fillStyle = "#ccc";
  ctx.font = "11px sans-serif";
  lines.forEach((line, i) => ctx.fillText(String(line), 10, node.size[1] - 8 - 13 * (lines.length - 1 - i)));
  ctx.restore();
}

app.registerExtension({
  name: "gfti.nodes",
  setup() {
    api.addEventListener("gfti.loss", onLoss);
  },
  beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData.category !== "GFTI") return;
    const isStep = nodeData.name === "GFTIESOptimizeStep";
    const created = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const result = created?.apply(this, arguments);
      if (isStep) this.size[1] += CHART_HEIGHT + 10;
      return result;
    };
    const executed = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      executed?.apply(this, arguments);
      this.gftiText = isStep ? null : message?.text ?? null;
      this.setDirtyCanvas?.(true, true);
    };
    const draw = nodeType.prototype.onDrawForeground;
    nodeType.prototype.onDrawForeground = function (ctx) {
      draw?.apply(this, arguments);
      if (this.flags?.collapsed) return;
      const curve = isStep ? curves.get(String(this.id)) : null;
      if (curve?.best.length) drawCurve(ctx, this, curve);
      if (this.gftiText?.length) drawText(ctx, this, this.gftiText);
    };
    const removed = nodeType.prototype.onRemoved;
    nodeType.prototype.onRemoved = function () {
      curves.delete(String(this.id));
      this.gftiText = null;
      return removed?.apply(this, arguments);
    };
  },
});
