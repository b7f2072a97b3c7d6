// Package wasm holds the GOOS=js bindings of the cableway npm package: a
// WebSocket-compatible socket and a consumer API over the Go sdk, driven
// by js/loader.js. Everything but this file builds only for js/wasm.
package wasm
