//go:build js && wasm

// Command cableway is the WebAssembly program of the cableway npm package
// (js/dist/cableway.<hash>.wasm); see package wasm. Build it with
// `npm run build`, which also copies the matching wasm_exec.js.
package main

import "github.com/cableway/cableway/wasm"

func main() { wasm.Run() }
