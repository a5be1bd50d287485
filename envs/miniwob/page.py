"""What the env reads from a MiniWoB++ page: scoring globals, the utterance, and visible elements.

One `page.evaluate` call per step returns everything (a round trip to the browser costs more than
the scan). The scan is ours, not `core.getDOMInfo()`: that one walks every text fragment and is
slow; agents here need only what can be clicked, typed into or scrolled, with the pixel centre a
real mouse click would use. The scan goes into same-origin iframes (FlightWoB's airline page),
giving their elements' positions in the top page's pixels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

_SCAN_JS = """
async ([frames, W, H]) => {
  // let handlers, layout and paint settle before reading
  for (let i = 0; i < frames; i++) await new Promise(r => requestAnimationFrame(() => r()));
  const norm = s => (s || '').replace(/\\s+/g, ' ').trim();
  const POINTS = [[.5, .5], [.25, .25], [.75, .25], [.25, .75], [.75, .75], [.1, .5], [.9, .5], [.5, .1], [.5, .9]];
  const outside = '#reward-display, #sync-task-cover, #click-canvas, #query, script, style, br';
  const controls = new Set(['INPUT', 'TEXTAREA', 'SELECT', 'BUTTON']);
  const labelled = new Set(['BUTTON', 'A', 'LABEL', 'OPTION', 'SUMMARY', 'H1', 'H2', 'H3', 'H4', 'LI']);
  const ep = 'e' + WOB_EPISODE_ID;
  let active = document.activeElement;  // inside a focused iframe: the element focused in it
  while (active && active.tagName === 'IFRAME' && active.contentDocument) active = active.contentDocument.activeElement;
  const elements = [], shapes = [];
  const scan = (doc, ox, oy) => {  // (ox, oy): where doc's viewport sits in the top page
    for (const el of doc.body ? doc.body.querySelectorAll('*') : []) {
      if (elements.length >= 80) return;
      if (el.closest(outside)) continue;
      if (el.tagName === 'IFRAME') {
        const r = el.getBoundingClientRect();
        let inner = null;
        try { inner = el.contentDocument; } catch (e) {}  // another origin: not scanned
        if (inner) scan(inner, ox + r.left + el.clientLeft, oy + r.top + el.clientTop);
        continue;
      }
      if (el instanceof doc.defaultView.SVGElement) {
        if (['rect', 'circle', 'polygon', 'text', 'ellipse', 'line', 'path'].includes(el.tagName))
          shapes.push({tag: el.tagName, text: norm(el.textContent), fill: el.getAttribute('fill') || ''});
        if (el.tagName !== 'svg') continue;
      }
      const r = el.getBoundingClientRect();
      if (r.width < 1 || r.height < 1) continue;
      const st = doc.defaultView.getComputedStyle(el);
      if (st.visibility !== 'visible' || st.display === 'none' || st.opacity === '0') continue;
      // where a click reaches it: the centre, else (partly covered by another element) the centre of
      // a quarter or a point near an edge; none of them: covered, or clipped away
      let x = null, y = null;
      for (const [fx, fy] of POINTS) {
        const px = r.left + r.width * fx, py = r.top + r.height * fy;
        if (px + ox < 0 || py + oy < 0 || px + ox >= W || py + oy >= H) continue;
        const hit = doc.elementFromPoint(px, py);
        if (hit && (hit === el || el.contains(hit))) { x = px + ox; y = py + oy; break; }
      }
      if (x === null) continue;
      let text = '';
      if (el.tagName === 'INPUT') text = ['button', 'submit', 'reset'].includes(el.type) ? el.value : '';
      else if (labelled.has(el.tagName) && !(el.tagName === 'LI' && el.children.length)) text = norm(el.innerText);
      else if (![...el.children].some(c => norm(c.textContent))) text = norm(el.innerText);
      const scrollable = el.scrollHeight > el.clientHeight + 1 &&
          (el.tagName === 'TEXTAREA' || ['auto', 'scroll'].includes(st.overflowY));
      const pointer = st.cursor === 'pointer';
      if (!text && !controls.has(el.tagName) && !scrollable && !pointer && el.tagName !== 'svg') continue;
      const cls = typeof el.className === 'string' ? el.className : '';
      const pcls = el.parentElement && typeof el.parentElement.className === 'string' ? el.parentElement.className : '';
      elements.push({
        tag: el.tagName.toLowerCase(), type: el.type || '', text: text.slice(0, 200), id: el.id, cls, pcls,
        x, y, w: r.width, h: r.height, focused: el === active,
        value: 'value' in el && typeof el.value === 'string' ? el.value : '', checked: !!el.checked,
        tampered: el.dataset ? el.dataset.tampered === ep : false,
        scroll: scrollable ? [el.scrollTop, el.scrollHeight - el.clientHeight] : null,
        datatype: el.getAttribute('data-type') || '',
      });
    }
  };
  scan(document, 0, 0);
  // the natural-language email tasks return {utterance, fields} outside their test data mode
  const utterance = core.getUtterance();
  const editable = !!active && active !== document.body && (active.isContentEditable ||
      active.tagName === 'TEXTAREA' || (active.tagName === 'INPUT' &&
      !['button', 'submit', 'reset', 'checkbox', 'radio', 'range', 'color', 'file', 'image'].includes(active.type)));
  return {done: !!WOB_DONE_GLOBAL, reward: +WOB_REWARD_GLOBAL, raw: +WOB_RAW_REWARD_GLOBAL,
          reason: WOB_REWARD_REASON == null ? '' : String(WOB_REWARD_REASON),  // null or undefined
          utterance: typeof utterance === 'object' && utterance !== null ? String(utterance.utterance) : String(utterance),
          elements, shapes, editable,
          elapsed: core.ept0 === null ? 0 : Date.now() - core.ept0};
}
"""


@dataclass(frozen=True)
class Element:
    """A visible element a mouse can reach; (x, y) is where a click reaches it, in page (CSS)
    pixels: its centre, or where another element covers that, a visible point of it."""

    tag: str
    text: str
    x: float
    y: float
    w: float
    h: float
    type: str = ""
    id: str = ""
    cls: str = ""
    pcls: str = ""
    focused: bool = False
    value: str = ""
    checked: bool = False
    tampered: bool = False  # clicked during this episode (MiniWoB marks it)
    scroll: tuple[float, float] | None = None  # (scrollTop, max scrollTop) of a scrollable element
    datatype: str = ""


@dataclass(frozen=True)
class PageState:
    """One read of the page: the task's scoring globals, its utterance and visible elements."""

    done: bool
    reward: float  # WOB_REWARD_GLOBAL (time-scaled by the task when it asks for it)
    raw_reward: float  # WOB_RAW_REWARD_GLOBAL (the task's score without the time factor)
    reason: str
    utterance: str
    elements: tuple[Element, ...] = ()
    shapes: tuple[dict[str, str], ...] = field(default_factory=tuple)
    editable_focused: bool = False
    elapsed_ms: float = 0.0  # page time since the episode started (the page's own clock)

    def find_text(self, text: str) -> Element | None:
        """The first element whose text is `text` (whitespace-normalised; then ignoring case)."""
        want = " ".join(text.split())
        for same in (lambda t: t == want, lambda t: t.lower() == want.lower()):
            for el in self.elements:
                if el.text and same(el.text):
                    return el
        return None


def read_state(page: Any, settle_frames: int = 2, area: tuple[int, int] = (160, 210)) -> PageState:
    """Scan the page (after `settle_frames` animation frames) into a `PageState`, keeping the
    elements a click inside the task `area` (width, height from the top-left) can reach.

    Under a paused page clock no animation frame comes: pass settle_frames=0 there (the env has
    already run the clock forward)."""
    raw = page.evaluate(_SCAN_JS, [settle_frames, *area])
    elements = tuple(Element(**{**e, "scroll": tuple(e["scroll"]) if e["scroll"] else None})
                     for e in raw["elements"])
    return PageState(done=raw["done"], reward=float(raw["reward"]), raw_reward=float(raw["raw"]),
                     reason=raw["reason"], utterance=raw["utterance"], elements=elements,
                     shapes=tuple(raw["shapes"]), editable_focused=raw["editable"],
                     elapsed_ms=float(raw["elapsed"]))
