// A <textarea> bound to an Automerge text: every local edit becomes one
// splice (so concurrent typing merges character by character), remote edits
// are applied with the local selection moved through their patches, and other
// people's cursors are drawn on a mirror layer above the text.

import * as A from "@automerge/automerge/slim"
import type { DocHandle, DocHandleChangePayload } from "@automerge/automerge-repo/slim"

/** The shape of the demo's documents. */
export interface TextDoc {
  text: string
}

/** Another person's cursor, resolved to positions in the current text. */
export interface RemoteCursor {
  name: string
  color: string
  start: number
  end: number
}

/** A cursor that stays put across concurrent edits (Automerge cursors). */
export interface StableSelection {
  start: A.Cursor
  end: A.Cursor
}

const PATH = ["text"]

function isHigh(c: number) {
  return c >= 0xd800 && c <= 0xdbff
}
function isLow(c: number) {
  return c >= 0xdc00 && c <= 0xdfff
}

/**
 * The single splice that turns `a` into `b`, given the caret position in `b`
 * (the inserted text ends at the caret when the edit was typing).
 */
export function diff(a: string, b: string, caret = b.length): { index: number; del: number; insert: string } {
  const maxSuffix = Math.min(a.length, b.length, Math.max(0, b.length - caret))
  let s = 0
  while (s < maxSuffix && a.charCodeAt(a.length - 1 - s) === b.charCodeAt(b.length - 1 - s)) s++
  const maxPrefix = Math.min(a.length - s, b.length - s)
  let p = 0
  while (p < maxPrefix && a.charCodeAt(p) === b.charCodeAt(p)) p++
  // never split a surrogate pair
  if (p > 0 && isHigh(a.charCodeAt(p - 1))) p--
  if (s > 0 && isLow(a.charCodeAt(a.length - s)) && a.length - s > p) s--
  return { index: p, del: a.length - p - s, insert: b.slice(p, b.length - s) }
}

/** Move a position through one patch on the text. */
function movePosition(pos: number, patch: A.Patch): number {
  if (patch.path.length !== 2 || patch.path[0] !== "text" || typeof patch.path[1] !== "number") return pos
  const at = patch.path[1]
  if (patch.action === "splice") {
    return pos > at ? pos + patch.value.length : pos
  }
  if (patch.action === "del") {
    const n = patch.length ?? 1
    if (pos <= at) return pos
    return pos >= at + n ? pos - n : at
  }
  return pos
}

/** Binds a textarea to a handle's `text`. */
export class TextBinding {
  readonly textarea: HTMLTextAreaElement
  readonly mirror: HTMLElement
  readonly handle: DocHandle<TextDoc>
  #last = ""
  #cursors: RemoteCursor[] = []
  #onSelection: (sel: { start: number; end: number }) => void
  #cleanup: (() => void)[] = []

  constructor(
    textarea: HTMLTextAreaElement,
    mirror: HTMLElement,
    handle: DocHandle<TextDoc>,
    onSelection: (sel: { start: number; end: number }) => void
  ) {
    this.textarea = textarea
    this.mirror = mirror
    this.handle = handle
    this.#onSelection = onSelection
    const text = handle.doc()?.text
    this.#last = typeof text === "string" ? text : ""
    textarea.value = this.#last

    const listen = <T extends EventTarget>(target: T, ev: string, fn: (e: Event) => void) => {
      target.addEventListener(ev, fn)
      this.#cleanup.push(() => target.removeEventListener(ev, fn))
    }
    listen(textarea, "input", () => this.#onInput())
    listen(textarea, "scroll", () => this.#syncScroll())
    listen(document, "selectionchange", () => {
      if (document.activeElement === textarea) this.#reportSelection()
    })
    listen(textarea, "focus", () => this.#reportSelection())
    listen(window, "resize", () => this.render())
    const onChange = (p: DocHandleChangePayload<TextDoc>) => this.#onChange(p)
    handle.on("change", onChange)
    this.#cleanup.push(() => handle.off("change", onChange))
    this.render()
  }

  /** The local selection as stable cursors, for presence. */
  stableSelection(): StableSelection | undefined {
    const doc = this.handle.doc()
    if (!doc || typeof doc.text !== "string") return undefined
    try {
      return {
        start: A.getCursor(doc, PATH, this.textarea.selectionStart),
        end: A.getCursor(doc, PATH, this.textarea.selectionEnd),
      }
    } catch {
      return undefined
    }
  }

  /** Resolve a peer's stable selection in the current document (undefined if unknown yet). */
  resolve(sel: StableSelection | undefined | null): { start: number; end: number } | undefined {
    const doc = this.handle.doc()
    if (!sel || !doc || typeof doc.text !== "string") return undefined
    try {
      return {
        start: A.getCursorPosition(doc, PATH, sel.start),
        end: A.getCursorPosition(doc, PATH, sel.end),
      }
    } catch {
      return undefined
    }
  }

  /** Draw these cursors of other people. */
  setCursors(cursors: RemoteCursor[]): void {
    this.#cursors = cursors
    this.render()
  }

  #onInput(): void {
    const next = this.textarea.value
    if (this.textarea.readOnly) {
      this.textarea.value = this.#last
      return
    }
    const d = diff(this.#last, next, this.textarea.selectionEnd)
    this.#last = next
    if (d.del === 0 && d.insert === "") return
    this.handle.change(doc => {
      if (typeof doc.text !== "string") doc.text = ""
      A.splice(doc, PATH, d.index, d.del, d.insert)
    })
    this.render()
    this.#reportSelection()
  }

  #onChange({ doc, patches }: DocHandleChangePayload<TextDoc>): void {
    const text = typeof doc.text === "string" ? doc.text : ""
    const ta = this.textarea
    if (text === ta.value) {
      this.#last = text
      this.render()
      return
    }
    let start = ta.selectionStart
    let end = ta.selectionEnd
    const focused = document.activeElement === ta
    const scroll = ta.scrollTop
    for (const p of patches) {
      start = movePosition(start, p)
      end = movePosition(end, p)
    }
    ta.value = text
    this.#last = text
    start = Math.min(start, text.length)
    end = Math.min(end, text.length)
    if (focused) ta.setSelectionRange(start, end)
    ta.scrollTop = scroll
    this.render()
  }

  #reportSelection(): void {
    this.#onSelection({ start: this.textarea.selectionStart, end: this.textarea.selectionEnd })
  }

  #syncScroll(): void {
    this.mirror.scrollTop = this.textarea.scrollTop
  }

  /** Re-draw the mirror: the text (invisible) with the other people's carets. */
  render(): void {
    const ta = this.textarea
    const text = ta.value
    const m = this.mirror
    m.style.width = `${ta.clientWidth + ta.clientLeft * 2}px`
    m.style.height = `${ta.clientHeight + ta.clientTop * 2}px`
    const marks = this.#cursors
      .map(c => ({ ...c, at: Math.max(0, Math.min(text.length, c.end)) }))
      .sort((a, b) => a.at - b.at)
    m.replaceChildren()
    let pos = 0
    for (const c of marks) {
      if (c.at > pos) m.appendChild(document.createTextNode(text.slice(pos, c.at)))
      pos = c.at
      const caret = document.createElement("span")
      caret.className = "caret"
      caret.style.setProperty("--c", c.color)
      caret.dataset.name = c.name
      const label = document.createElement("span")
      label.className = "caret-label"
      label.textContent = c.name
      caret.appendChild(label)
      m.appendChild(caret)
    }
    // a trailing newline needs a character after it to take up a line
    m.appendChild(document.createTextNode(text.slice(pos) + "\u200b"))
    this.#syncScroll()
  }

  /** Stop listening. */
  destroy(): void {
    for (const fn of this.#cleanup) fn()
    this.#cleanup = []
  }
}
