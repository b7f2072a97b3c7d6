// cableway: an ActionCable client in Go/WebAssembly for JavaScript.
//
//   import * as ActionCable from '@rails/actioncable'
//   import { install } from 'cableway'
//   install(ActionCable)            // ActionCable.adapters.WebSocket = CableSocket
//
// or the whole consumer: createConsumer(url).subscriptions.create(...).
export { CableSocket, cableSocketWith, install } from './socket.js'
export { Consumer, Subscription, Subscriptions, createConsumer } from './consumer.js'
export { load, crash } from './loader.js'
