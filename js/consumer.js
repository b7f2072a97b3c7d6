// The consumer API: @rails/actioncable's shape (createConsumer →
// subscriptions.create → perform/unsubscribe), run by the Go sdk's
// cable.Consumer (reconnects, resubscribes, stale detection).
import { load, newId } from './loader.js'
import { connectionOptions, Emitter } from './socket.js'

// restartDelay spaces fresh instances after a Go instance died.
const restartDelay = 500

/**
 * A connection to an ActionCable server that keeps itself connected.
 * Events: `connected` ({reconnected, transport}), `disconnected`
 * ({willAttemptReconnect, error}), `transportchange` ({from, to, upgrade,
 * reason}), `error` ({error, reason}) and `stopped`.
 */
export class Consumer extends Emitter {
  constructor(url, options = {}) {
    super()
    this.url = String(url).replace(/^http(s?):/i, 'ws$1:')
    this.options = connectionOptions(options)
    this.subscriptions = new Subscriptions(this)
    this.connected = false
    /** The transport of the current connection: 'websocket', 'sse', 'longpoll', or '' before the first. */
    this.transport = ''
    this._rt = null
    this._id = 0
    this._open()
  }

  _open() {
    this._stopped = false
    this._id = newId()
    const id = this._id
    load().then(
      (rt) => {
        if (this._stopped || id !== this._id) return
        this._rt = rt
        rt.targets.set(id, this)
        try {
          rt.call('consumerOpen', id, this.url, this.options)
          for (const s of this.subscriptions.subscriptions) s._open(rt)
        } catch (err) {
          this._died(err)
        }
      },
      (err) => this._error(err, ''),
    )
  }

  _record(kind, payload) {
    switch (kind) {
      case 'C':
        this.connected = true
        this.transport = payload.slice(1)
        this._emit('connected', { type: 'connected', reconnected: payload[0] === '1', transport: this.transport })
        break
      case 'W': {
        const { from, to, upgrade, reason } = JSON.parse(payload)
        this.transport = to
        this._emit('transportchange', { type: 'transportchange', from, to, upgrade, reason })
        break
      }
      case 'D':
        this.connected = false
        this._emit('disconnected', {
          type: 'disconnected',
          willAttemptReconnect: payload[0] === '1',
          error: payload.length > 1 ? new Error(payload.slice(1)) : undefined,
        })
        break
      case 'S': {
        this.connected = false
        this._rt?.targets.delete(this._id)
        this._stopped = true
        if (payload) {
          const { message, reason } = JSON.parse(payload)
          this._error(new Error(message), reason)
        }
        this._emit('stopped', { type: 'stopped' })
        break
      }
    }
  }

  _error(error, reason) {
    this._emit('error', { type: 'error', error, message: error.message, reason })
  }

  // _died: the Go instance ended. Report it, then start over on a fresh
  // instance: subscriptions are made again there.
  _died(err) {
    const wasConnected = this.connected
    this.connected = false
    this._error(err, 'instance_exited')
    if (wasConnected) {
      this._emit('disconnected', { type: 'disconnected', willAttemptReconnect: true, error: err })
      for (const s of this.subscriptions.subscriptions) s._drop(true)
    }
    const id = this._id
    setTimeout(() => {
      if (!this._stopped && id === this._id) this._open()
    }, restartDelay)
  }

  /** Reopens a consumer after disconnect(); subscriptions are made again. */
  connect() {
    if (this._stopped) this._open()
  }

  /** Closes the connection; resolves when the Go consumer has stopped. */
  async disconnect() {
    this._stopped = true
    const rt = this._rt
    if (!rt || rt.dead) return
    const [pid, done] = rt.promise()
    rt.call('consumerClose', this._id, pid)
    await done
  }
}

export class Subscriptions {
  constructor(consumer) {
    this.consumer = consumer
    this.subscriptions = []
  }

  /**
   * Subscribes to a channel: `channel` is a channel name or a params object
   * ({channel: 'ChatChannel', room: 'lobby'}); mixin holds the callbacks
   * connected, disconnected, rejected and received, and any methods.
   */
  create(channel, mixin = {}) {
    const params = typeof channel === 'object' ? channel : { channel }
    const s = new Subscription(this.consumer, params, mixin)
    this.subscriptions.push(s)
    if (this.consumer._rt && !this.consumer._rt.dead && !this.consumer._stopped) s._open(this.consumer._rt)
    return s
  }

  remove(subscription) {
    this.subscriptions = this.subscriptions.filter((s) => s !== subscription)
  }
}

export class Subscription {
  constructor(consumer, params, mixin) {
    Object.assign(this, mixin)
    this.consumer = consumer
    // Rails compares identifiers byte for byte: keep the caller's key order.
    this.identifier = JSON.stringify(params)
    this._rt = null
    this._id = 0
    this._confirmed = false
  }

  _open(rt) {
    this._rt = rt
    this._id = newId()
    rt.targets.set(this._id, this)
    const err = rt.call('subscribe', this._id, this.consumer._id, this.identifier)
    if (err) throw new Error(err)
  }

  _record(kind, payload) {
    switch (kind) {
      case 'r':
        this.received?.(JSON.parse(payload))
        break
      case 'c':
        this._confirmed = true
        this.connected?.({ reconnected: payload === '1' })
        break
      case 'd':
        this._drop(payload === '1')
        break
      case 'j':
        this._rt?.targets.delete(this._id)
        this.consumer.subscriptions.remove(this)
        this.rejected?.()
        break
    }
  }

  _drop(willAttemptReconnect) {
    if (!this._confirmed) return
    this._confirmed = false
    this.disconnected?.({ willAttemptReconnect })
  }

  _died() {} // the consumer reports it and subscribes again

  /**
   * Calls the channel's action with data. Resolves once the command was
   * handed to the network; rejects (sending nothing) while the
   * subscription is not confirmed and connected.
   */
  perform(action, data = {}) {
    return this._send(String(action), data)
  }

  /** Sends data, which names its action, as the command's data. */
  send(data) {
    return this._send('', data)
  }

  async _send(action, data) {
    const rt = this._rt
    if (!rt || rt.dead) throw new Error('cableway: not connected')
    const [pid, done] = rt.promise()
    rt.call('subscriptionSend', this._id, pid, action, JSON.stringify(data ?? {}))
    return done
  }

  /** Ends the subscription. */
  unsubscribe() {
    this.consumer.subscriptions.remove(this)
    const rt = this._rt
    if (rt && !rt.dead) {
      rt.targets.delete(this._id)
      rt.call('unsubscribe', this._id)
    }
    if (this._confirmed) {
      this._confirmed = false
      this.disconnected?.({ willAttemptReconnect: false })
    }
  }
}

/** Creates a consumer for the cable at url (ws(s):// or http(s)://). */
export function createConsumer(url, options) {
  return new Consumer(url, options)
}
