// Launches Debian's Chromium through playwright-core, headless, with a fresh
// profile in a temporary directory.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium } from 'playwright-core'

export const chromiumPath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'

export async function launch() {
  const dir = await mkdtemp(join(tmpdir(), 'cableway-chromium-'))
  const context = await chromium.launchPersistentContext(dir, {
    executablePath: chromiumPath,
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
    ],
  })
  return {
    context,
    async page(url) {
      const page = await context.newPage()
      const errors = []
      page.on('pageerror', (e) => errors.push(e))
      page.on('console', (m) => { if (process.env.CABLEWAY_DEBUG) console.log('[page]', m.text()) })
      await page.goto(url)
      await page.waitForFunction(() => window.H?.ready === true, null, { timeout: 30000 })
      page.errors = errors
      return page
    },
    async close() {
      await context.close().catch(() => {})
      await rm(dir, { recursive: true, force: true })
    },
  }
}
