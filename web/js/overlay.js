// Drawing an image and its face boxes as one SVG. The viewBox is the image's own pixel grid, so boxes
// in image pixels line up with the picture at any displayed size; only the score tags, sized in screen
// pixels, are redrawn when the displayed size changes.

import { svg } from "./ui.js";

// With dozens of overlapping candidates, score tags on every box hide the picture; tag the best ones.
const MAX_TAGS = 12;
const TAG_FONT_PX = 12;

// Tags are sized in screen pixels, which depend on the displayed size: redraw when that changes.
const scenes = new WeakMap();
const resizes = typeof ResizeObserver === "undefined" ? null : new ResizeObserver((entries) => {
  for (const entry of entries) {
    const last = scenes.get(entry.target);
    if (!last) continue;
    const scale = shownScale(entry.target, last.scene);
    if (scale > 0 && Math.abs(scale - last.scale) / scale > 0.02) drawScene(entry.target, last.scene);
  }
});

/** Screen pixels per image pixel (preserveAspectRatio "meet": the tighter of the two axes); 0 if hidden. */
function shownScale(root, { width, height }) {
  const box = root.getBoundingClientRect();
  if (!box.width || !box.height) return 0;
  return Math.min(box.width / width, box.height / height);
}

/**
 * @param {SVGSVGElement} root
 * @param {{href?: string|null, width: number, height: number, boxes: Array<{x:number,y:number,w:number,h:number,score:number}>,
 *          space: string, area?: {x:number,y:number,w:number,h:number}|null}} scene
 */
export function drawScene(root, scene) {
  const { href = null, width, height, boxes, space, area = null } = scene;
  root.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const scale = shownScale(root, scene);
  if (!scenes.has(root) && resizes) resizes.observe(root);
  scenes.set(root, { scene, scale });
  root.dataset.space = space;
  root.dataset.width = String(width);
  root.dataset.height = String(height);
  root.dataset.boxes = String(boxes.length);
  const children = [];
  if (href) {
    // preserveAspectRatio none: the gateway's width/height (after EXIF rotation) is the authority
    // the boxes are measured in, even if the browser's decode were to differ by a pixel.
    children.push(svg("image", { href, x: 0, y: 0, width, height, preserveAspectRatio: "none" }));
  }
  if (area) {
    children.push(svg("rect", {
      class: "letterbox-area", x: area.x, y: area.y, width: area.w, height: area.h,
      "vector-effect": "non-scaling-stroke", "stroke-width": 1.5,
    }));
  }
  // Label size in image units that comes out at TAG_FONT_PX on screen (a guess while still hidden).
  const font = scale > 0 ? TAG_FONT_PX / scale : Math.max(width, height) / 42;
  const tagged = new Set(boxes.map((b, i) => [b.score, i]).sort((a, b) => b[0] - a[0]).slice(0, MAX_TAGS).map(([, i]) => i));
  boxes.forEach((b, i) => {
    const index = b.index ?? i;
    const label = b.score.toFixed(2);
    const tagW = font * (0.62 * label.length + 0.7);
    const tagH = font * 1.35;
    const above = b.y - tagH >= 0;
    const tagY = above ? b.y - tagH : b.y;
    const group = svg("g", {
      class: "box",
      dataset: {
        index: String(index),
        x: String(b.x),
        y: String(b.y),
        w: String(b.w),
        h: String(b.h),
        score: String(b.score),
      },
    },
    svg("title", { text: `Face ${index + 1}: score ${label}` }),
    svg("rect", { class: "halo", x: b.x, y: b.y, width: b.w, height: b.h, "vector-effect": "non-scaling-stroke", "stroke-width": 4.5 }),
    svg("rect", { class: "edge", x: b.x, y: b.y, width: b.w, height: b.h, "vector-effect": "non-scaling-stroke", "stroke-width": 2 }),
    tagged.has(i) ? svg("rect", { class: "tag", x: b.x, y: tagY, width: tagW, height: tagH, rx: font * 0.2 }) : null,
    tagged.has(i) ? svg("text", { x: b.x + font * 0.35, y: tagY + tagH * 0.76, "font-size": font, text: label }) : null,
    );
    children.push(group);
  });
  root.replaceChildren(...children);
}

export function clearScene(root) {
  scenes.delete(root);
  root.replaceChildren();
  root.dataset.boxes = "0";
}

/** Mark box `index` (or none with -1) as highlighted, e.g. while its table row is hovered. */
export function highlightBox(root, index) {
  for (const g of root.querySelectorAll(".box")) g.classList.toggle("highlight", Number(g.dataset.index) === index);
}
