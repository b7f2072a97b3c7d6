// cableway/node: the 'cableway' API for Node ≥ 20 and Electron's main
// process. Importing it hands the `ws` package's WebSocket to cableway and
// defines the browser globals @rails/actioncable needs (self,
// addEventListener, removeEventListener, document) where they are missing.
export * from './index.js'
/** The `ws` package's WebSocket class, which cableway dials with. */
export const WebSocket: new (url: string, protocols?: string | string[], options?: unknown) => unknown
