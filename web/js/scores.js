// The minimum score for drawing a box, shared by the detect and camera views and kept across visits.
// The device returns every candidate that survives its own threshold and NMS; with an undertrained model
// that can be dozens of weak boxes, and a person wants to look past them without asking the device again.

const KEY = "rnnpool.minScore";
// The device keeps candidates down to 0.05 so accuracy can be measured over the whole precision-recall
// curve; a person looking at a photo wants the confident ones first.
const DEFAULT = 0.5;
const listeners = new Set();
let value = load();

function load() {
  try {
    const stored = Number(localStorage.getItem(KEY));
    const raw = localStorage.getItem(KEY);
    return raw !== null && Number.isFinite(stored) && stored >= 0 && stored <= 1 ? stored : DEFAULT;
  } catch {
    return DEFAULT;
  }
}

export function minScore() {
  return value;
}

export function onMinScore(fn) {
  listeners.add(fn);
}

/** Wire a range input (and its <output>) to the shared value. */
export function bindScoreInput(input, output) {
  const paint = () => {
    input.value = String(value);
    if (output) output.textContent = value.toFixed(2);
  };
  paint();
  listeners.add(paint);
  input.addEventListener("input", () => {
    value = Math.min(1, Math.max(0, Number(input.value) || 0));
    try {
      localStorage.setItem(KEY, String(value));
    } catch {
      // Not persisting is fine.
    }
    for (const fn of listeners) fn(value);
  });
}
