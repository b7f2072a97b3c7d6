// Renderer: the official @rails/actioncable (ESM build) with cableway's
// CableSocket dropped in. Messages from the main process's consumer arrive
// over IPC (preload.cjs) and are shown alongside.
import * as ActionCable from '../../node_modules/@rails/actioncable/app/assets/javascripts/actioncable.esm.js'
import { install } from '../../js/index.js'

install(ActionCable) // ActionCable.adapters.WebSocket = CableSocket

const $ = (id) => document.getElementById(id)
const log = (who, text) => $('log').insertAdjacentHTML('afterbegin', `<li><span class="who">${who}</span> ${text}</li>`)
const escape = (s) => String(s).replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`)

const url = new URLSearchParams(location.search).get('cable') ?? 'ws://127.0.0.1:3000/cable?token=secret-electron'
const consumer = ActionCable.createConsumer(url)
const chat = consumer.subscriptions.create({ channel: 'ChatChannel', room: 'electron' }, {
  connected: () => ($('renderer-status').textContent = 'connected'),
  disconnected: () => ($('renderer-status').textContent = 'disconnected'),
  received: (m) => log('renderer got', `${escape(m.user)}: ${escape(m.text)}`),
})

$('form').addEventListener('submit', (e) => {
  e.preventDefault()
  chat.perform('speak', { text: $('text').value })
  $('text').value = ''
})
$('via-main').addEventListener('click', () => {
  window.mainCable?.speak($('text').value)
  $('text').value = ''
})
window.mainCable?.on((kind, data) => {
  if (kind === 'status') $('main-status').textContent = data.connected ? 'connected' : 'disconnected'
  if (kind === 'message') log('main got', `${escape(data.user)}: ${escape(data.text)}`)
  if (kind === 'error') $('main-status').textContent = `error: ${data.message}`
})
