// Drawing an image and its face boxes as one SVG. The viewBox is the image's own pixel grid, so boxes
// in image pixels line up at any displayed size without recomputing anything on resize.

import { svg } from "./ui.js";

// With dozens of overlapping candidates, score tags on every box hide the picture; tag the best ones.
const MAX_TAGS = 12;

/**
 * @param {SVGSVGElement} root
 * @param {{href?: string|null, width: number, height: number, boxes: Array<{x:number,y:number,w:number,h:number,score:number}>,
 *          space: string, area?: {x:number,y:number,w:number,h:number}|null}} scene
 */
export function drawScene(root, { href = null, width, height, boxes, space, area = null }) {
  root.setAttribute("viewBox", `0 0 ${width} ${height}`);
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
  // Label size follows the image so it stays legible on a phone yet small on a 4000 px photo.
  const font = Math.max(width, height) / 42;
  const tagged = new Set(boxes.map((b, i) => [b.score, i]).sort((a, b) => b[0] - a[0]).slice(0, MAX_TAGS).map(([, i]) => i));
  boxes.forEach((b, i) => {
    const label = b.score.toFixed(2);
    const tagW = font * (0.62 * label.length + 0.7);
    const tagH = font * 1.35;
    const above = b.y - tagH >= 0;
    const tagY = above ? b.y - tagH : b.y;
    const group = svg("g", {
      class: "box",
      dataset: {
        index: String(i),
        x: String(b.x),
        y: String(b.y),
        w: String(b.w),
        h: String(b.h),
        score: String(b.score),
      },
    },
    svg("title", { text: `Face ${i + 1}: score ${label}` }),
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
  root.replaceChildren();
  root.dataset.boxes = "0";
}

/** Mark box `index` (or none with -1) as highlighted, e.g. while its table row is hovered. */
export function highlightBox(root, index) {
  for (const g of root.querySelectorAll(".box")) g.classList.toggle("highlight", Number(g.dataset.index) === index);
}
