/** A listener map: event name → listener signature. */
export type EventMap = { [event: string]: (...args: any[]) => void }

/** A small typed event emitter (no dependency; works in browsers and Node). */
export class TypedEmitter<Events extends EventMap> {
  #listeners = new Map<keyof Events, Set<(...args: any[]) => void>>()

  /** Call `listener` on every `event`. Returns a function that removes it. */
  on<E extends keyof Events>(event: E, listener: Events[E]): () => void {
    let set = this.#listeners.get(event)
    if (!set) {
      set = new Set()
      this.#listeners.set(event, set)
    }
    set.add(listener)
    return () => this.off(event, listener)
  }

  /** Call `listener` on the next `event` only. */
  once<E extends keyof Events>(event: E, listener: Events[E]): () => void {
    const wrapped = ((...args: Parameters<Events[E]>) => {
      this.off(event, wrapped)
      listener(...args)
    }) as Events[E]
    return this.on(event, wrapped)
  }

  /** Remove a listener added with {@link on}. */
  off<E extends keyof Events>(event: E, listener: Events[E]): void {
    this.#listeners.get(event)?.delete(listener)
  }

  /** Call the listeners of `event`; a listener that throws does not stop the others. */
  protected emit<E extends keyof Events>(event: E, ...args: Parameters<Events[E]>): void {
    const set = this.#listeners.get(event)
    if (!set) return
    for (const l of [...set]) {
      try {
        l(...args)
      } catch (e) {
        // report asynchronously so that one bad listener cannot break the connection
        setTimeout(() => {
          throw e
        }, 0)
      }
    }
  }
}
