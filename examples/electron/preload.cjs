// Exposes the main process's cable to the window, and nothing else.
const { contextBridge, ipcRenderer } = require('electron')

contextBridge.exposeInMainWorld('mainCable', {
  speak: (text) => ipcRenderer.invoke('speak', text),
  on: (fn) => ipcRenderer.on('main-cable', (_, kind, data) => fn(kind, data)),
})
