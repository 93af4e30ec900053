// GFTI: the live loss chart on "GFTI ES Optimize Step" nodes and the text results of GFTI nodes, as DOM widgets,
// which both renderings of the current frontend show (the classic canvas overlays them, Nodes 2.0 mounts them
// inside its Vue node) and which ComfyUI's 2024 frontend also has. Canvas drawing alone (onDrawForeground)
// is never called by Nodes 2.0.
//
// The server broadcasts `gfti.loss` once per step start and once per generation; each message carries `chart`,
// the core's own chart of the run so far (a PNG data URL: gfti_core/chart.py draws it, so whatever the core
// plots shows here). `node` is the execution id: "12" on the root graph, "5:12" for node 12 inside subgraph
// node 5. ComfyUI dispatches a custom message type only if a listener for it was registered before it
// arrives, hence the listener in setup().
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const CHART_HEIGHT = 200; // the chart image and two lines of the step's summary
const TEXT_HEIGHT = 44;

// The node an execution id names, walking into subgraphs ("5:12": node 12 of the subgraph of root node 5).
// The 2024 frontend has no subgraphs and no rootGraph: there every id is a plain root id.
function nodeByExecutionId(executionId) {
  let graph = app.rootGraph ?? app.graph;
  let node = null;
  for (const part of String(executionId).split(":")) {
    node = graph?.getNodeById(Number.isNaN(Number(part)) ? part : Number(part)) ?? null;
    if (!node) return null;
    graph = node.subgraph;
  }
  return node;
}

function onLoss(event) {
  const data = event.detail;
  const node = data?.node != null ? nodeByExecutionId(data.node) : null;
  const widget = node?.widgets?.find((w) => w.name === "gfti_chart");
  if (!widget || !data.chart) return;
  widget.element.querySelector("img").src = data.chart;
  widget.element.dataset.generation = String(data.generation ?? data.history?.mean?.length ?? 0);
  widget.element.dataset.run = data.run ?? "";
  node.setDirtyCanvas?.(true, true);
}

function domWidget(node, name, element, height) {
  const widget = node.addDOMWidget(name, "gfti", element, {
    serialize: false, // shown, never stored in the workflow nor sent with the prompt
    hideOnZoom: false,
    getValue: () => "",
    setValue: () => {},
    getMinHeight: () => height,
    getMaxHeight: () => height,
    getHeight: () => height,
  });
  widget.serialize = false;
  return widget;
}

function chartElement() {
  const box = document.createElement("div");
  box.className = "gfti-chart";
  box.dataset.generation = "0";
  Object.assign(box.style, { display: "flex", flexDirection: "column", gap: "2px", overflow: "hidden" });
  const frame = document.createElement("div");
  Object.assign(frame.style, { flex: "1 1 auto", minHeight: "0", display: "flex", alignItems: "center",
                               justifyContent: "center", background: "#1b1b1b", borderRadius: "4px" });
  const img = document.createElement("img");
  img.alt = "GFTI loss per generation";
  Object.assign(img.style, { display: "none", maxWidth: "100%", maxHeight: "100%", objectFit: "contain" });
  img.addEventListener("load", () => { img.style.display = ""; hint.style.display = "none"; });
  const hint = document.createElement("span");
  hint.textContent = "the loss curve appears here while the step runs";
  Object.assign(hint.style, { font: "11px sans-serif", color: "#888", textAlign: "center" });
  frame.append(img, hint);
  box.append(frame, textElement());
  return box;
}

function textElement() {
  const box = document.createElement("div");
  box.className = "gfti-result";
  Object.assign(box.style, { flex: "0 0 auto", whiteSpace: "pre-wrap", overflowWrap: "anywhere", overflow: "auto",
                             font: "12px sans-serif", color: "var(--input-text, #ddd)", padding: "2px 4px" });
  return box;
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
      if (isStep) domWidget(this, "gfti_chart", chartElement(), CHART_HEIGHT);
      else if (nodeData.output_node || nodeData.name === "GFTILoadTrainingImages")
        domWidget(this, "gfti_result", textElement(), TEXT_HEIGHT);
      return result;
    };
    const executed = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      executed?.apply(this, arguments);
      const widget = this.widgets?.find((w) => w.name === "gfti_result" || w.name === "gfti_chart");
      const target = widget?.element.querySelector(".gfti-result") ?? widget?.element;
      if (target) target.textContent = (message?.text ?? []).join("\n");
      this.setDirtyCanvas?.(true, true);
    };
  },
});
