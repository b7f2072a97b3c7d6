// Electron main process: `electron examples/electron/main.mjs` (with the
// example Rails app on 127.0.0.1:3000 allowing this app's origin:
// ALLOWED_ORIGINS=app://cableway examples/rails/run 3000).
//
// Two ways to use cableway, side by side:
//   - here, in the main process, the consumer API (cable-main.mjs), which
//     forwards messages to the window over IPC;
//   - in the window (renderer.html), the official @rails/actioncable with
//     the one-line drop-in.
// The window is served from app://cableway/ so that it can fetch the
// .wasm (Chromium does not fetch file: URLs).
import { app, BrowserWindow, ipcMain, net, protocol } from 'electron'
import { join, normalize, sep } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { startChat } from './cable-main.mjs'

const root = fileURLToPath(new URL('../..', import.meta.url))
const cableURL = process.env.CABLE_URL ?? 'ws://127.0.0.1:3000/cable?token=secret-electron'

protocol.registerSchemesAsPrivileged([
  { scheme: 'app', privileges: { standard: true, secure: true, supportFetchAPI: true } },
])

app.whenReady().then(() => {
  // app://cableway/<path> → a file of the repository (read-only).
  protocol.handle('app', (req) => {
    const file = normalize(join(root, decodeURIComponent(new URL(req.url).pathname)))
    if (!file.startsWith(normalize(root + sep))) return new Response('forbidden', { status: 403 })
    return net.fetch(pathToFileURL(file).toString())
  })
  const win = new BrowserWindow({
    width: 900,
    height: 700,
    webPreferences: { preload: fileURLToPath(new URL('./preload.cjs', import.meta.url)) },
  })
  win.loadURL(`app://cableway/examples/electron/renderer.html?cable=${encodeURIComponent(cableURL)}`)

  const chat = startChat({
    url: cableURL,
    room: 'electron',
    report: (kind, data) => win.webContents.send('main-cable', kind, data),
  })
  ipcMain.handle('speak', (_, text) => chat.speak(text))
  app.on('window-all-closed', () => chat.close().finally(() => app.quit()))
})
