/** Children h() accepts: nodes, strings, and nothing. */
export type Child = Node | string | number | null | undefined | false

/**
 * Make an element: attributes (`class`, `data-*`, `on<event>` handlers,
 * others as attributes or properties) and children.
 */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, unknown> = {},
  ...children: (Child | Child[])[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag)
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue
    if (k.startsWith("on") && typeof v === "function") {
      el.addEventListener(k.slice(2), v as EventListener)
    } else if (k === "class") {
      el.className = String(v)
    } else if (k === "value" || k === "checked" || k === "readOnly" || k === "disabled") {
      ;(el as unknown as Record<string, unknown>)[k] = v
    } else {
      el.setAttribute(k, v === true ? "" : String(v))
    }
  }
  append(el, children)
  return el
}

/** Append children (flattened; nothing for null/undefined/false). */
export function append(el: Node, children: (Child | Child[])[]): void {
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue
    el.appendChild(typeof c === "string" || typeof c === "number" ? document.createTextNode(String(c)) : c)
  }
}

/** Replace an element's children. */
export function replace(el: Element, ...children: (Child | Child[])[]): void {
  el.replaceChildren()
  append(el, children)
}

/** "1.2 KB" */
export function bytes(n: number): string {
  if (n < 1024) return `${n} B`
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`
  return `${(n / 1024 / 1024).toFixed(1)} MB`
}

/** "3 min ago" */
export function ago(iso: string | undefined): string {
  if (!iso) return ""
  const s = Math.round((Date.now() - Date.parse(iso)) / 1000)
  if (s < 5) return "just now"
  if (s < 60) return `${s} s ago`
  if (s < 3600) return `${Math.round(s / 60)} min ago`
  if (s < 86400) return `${Math.round(s / 3600)} h ago`
  return new Date(iso).toLocaleDateString()
}

/** A short form of a long ID. */
export function short(id: string, n = 8): string {
  return id.length > n + 1 ? id.slice(0, n) + "…" : id
}
