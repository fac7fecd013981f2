// The dashboard in a real browser: Debian's Chromium driven by
// playwright-core, against a running gpuflow (GPUFLOW_UI_BASE, e.g.
// http://127.0.0.1:8080) that registers by invitation (GPUFLOW_UI_INVITES:
// two codes a superuser made, comma-separated). It registers with a typed
// code, logs in, submits a job and watches
// it succeed with no reload and no polling request, cancels another,
// switches to Chinese, and checks that a second user sees none of the
// first one's jobs, who registers through an invitation link. Screenshots of each page go to GPUFLOW_UI_ARTIFACTS
// (default e2e/artifacts). Run by internal/e2e's TestDashboardInBrowser.
import assert from 'node:assert/strict'
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { chromium } from 'playwright-core'

const base = process.env.GPUFLOW_UI_BASE
if (!base) throw new Error('set GPUFLOW_UI_BASE to the API, e.g. http://127.0.0.1:8080')
const invites = (process.env.GPUFLOW_UI_INVITES ?? '').split(',').filter(Boolean)
if (invites.length !== 2) throw new Error('set GPUFLOW_UI_INVITES to two invitation codes, comma-separated')
const artifacts = process.env.GPUFLOW_UI_ARTIFACTS ?? join(import.meta.dirname, 'artifacts')
mkdirSync(artifacts, { recursive: true })
const wait = { timeout: 60_000 }
const log = (...a) => console.log('dashboard:', ...a)

const profile = mkdtempSync(join(tmpdir(), 'gpuflow-chromium-'))
const context = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    // and a fresh --user-data-dir: Playwright passes `profile` as that
  ],
  viewport: { width: 1440, height: 960 },
  locale: 'en-US',
})

// Everything the page asks the server, and every WebSocket message.
const requests = []
const frames = []
const page = context.pages()[0] ?? (await context.newPage())
page.on('request', (r) => requests.push({ method: r.method(), url: new URL(r.url()) }))
page.on('websocket', (ws) => ws.on('framereceived', (f) => frames.push(String(f.payload))))
let loads = 0
page.on('load', () => loads++)
const errors = []
page.on('pageerror', (e) => errors.push(String(e)))
page.on('console', (m) => m.type() === 'error' && errors.push(m.text()))

async function shot(name) {
  await page.waitForTimeout(300) // let transitions settle before the picture
  await page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: true })
}

// Every input has a label and every button and link a name.
async function checkAccessible(where) {
  const bad = await page.evaluate(() => {
    const text = (el) => (el?.textContent ?? '').replace(/\s+/g, ' ').trim()
    const name = (el) =>
      (el.getAttribute('aria-label') ?? '').trim() ||
      (el.getAttribute('aria-labelledby') ?? '')
        .split(/\s+/)
        .map((id) => text(document.getElementById(id)))
        .join(' ')
        .trim() ||
      [...(el.labels ?? [])].map(text).join(' ').trim() ||
      (el.getAttribute('title') ?? '').trim()
    const out = []
    for (const el of document.querySelectorAll('input, select, textarea')) {
      if (el.type === 'hidden') continue
      if (!name(el)) out.push(`input without a label: ${el.outerHTML.slice(0, 160)}`)
    }
    for (const el of document.querySelectorAll('button, [role=button], a[href]')) {
      if (!name(el) && !text(el)) out.push(`button without a name: ${el.outerHTML.slice(0, 160)}`)
    }
    return out
  })
  assert.deepEqual(bad, [], `${where}: not accessible`)
}

const statusOf = () => page.getByTestId('job-status').getAttribute('data-status')
async function waitStatus(status) {
  await page.locator(`[data-testid=job-status][data-status=${status}]`).waitFor(wait)
}

const stamp = Date.now()
// fill types value and checks it stuck: a form that mounts as the
// previous page's state clears can drop what was typed first.
async function fill(locator, value) {
  for (let i = 0; i < 10; i++) {
    await locator.fill(value)
    if ((await locator.inputValue()) === value) return
    await new Promise((r) => setTimeout(r, 200))
  }
  throw new Error('could not fill an input')
}

const alice = { email: `alice-${stamp}@example.com`, password: 'correct-horse-battery-1' }
const bob = { email: `bob-${stamp}@example.com`, password: 'correct-horse-battery-2' }

try {
  // Registration and login.
  await page.goto(`${base}/ui/`)
  await page.getByRole('heading', { name: 'Log in' }).waitFor(wait)
  assert.match(page.url(), /#\/login/)
  await checkAccessible('login')
  await shot('login')
  await page.getByRole('link', { name: 'Create one' }).click()
  // The code's field is out of the way until one asks for it…
  await page.getByRole('heading', { name: 'Create an account' }).waitFor(wait)
  assert.equal(await page.getByLabel('Invitation code').count(), 0)
  await shot('register-start')
  await page.getByRole('button', { name: 'I have an invitation code' }).click()
  await page.getByLabel('Invitation code').waitFor(wait)
  await page.getByRole('link', { name: 'Log in' }).click()
  await page.getByRole('link', { name: 'Create one' }).click()
  await page.getByRole('heading', { name: 'Create an account' }).waitFor(wait)
  assert.equal(await page.getByLabel('Invitation code').count(), 0)
  await fill(page.getByLabel('Email'), alice.email)
  await fill(page.getByLabel('Password', { exact: true }), alice.password)
  await fill(page.getByLabel('Repeat the password'), alice.password)
  await checkAccessible('register')
  // … or the server says it registers by invitation: without a code it
  // refuses, and the form says what is needed and shows the field; a wrong
  // code is refused too. Neither creates the account.
  await page.getByRole('button', { name: 'Create account' }).click()
  await page.getByRole('alert').filter({ hasText: 'by invitation only' }).waitFor(wait)
  await page.getByLabel('Invitation code').waitFor(wait)
  await fill(page.getByLabel('Invitation code'), 'not-a-real-code')
  await page.getByRole('button', { name: 'Create account' }).click()
  await page.getByRole('alert').filter({ hasText: 'invitation code is unknown' }).waitFor(wait)
  await fill(page.getByLabel('Invitation code'), invites[0])
  assert.equal(await page.getByRole('alert').count(), 0, 'a new code clears the refusal')
  await shot('register')
  await page.getByRole('button', { name: 'Create account' }).click()
  await page.getByRole('heading', { name: 'Your jobs' }).waitFor(wait)
  await page.locator('[data-testid=live-badge][data-state=live]').waitFor(wait)
  log('registered and logged in')

  // Log out and in again.
  await page.getByRole('button', { name: 'Log out' }).click()
  await page.getByRole('heading', { name: 'Log in' }).waitFor(wait)
  await fill(page.getByLabel('Email'), alice.email)
  await fill(page.getByLabel('Password'), alice.password)
  await page.getByRole('button', { name: 'Log in' }).click()
  await page.getByRole('heading', { name: 'Your jobs' }).waitFor(wait)
  await page.locator('[data-testid=live-badge][data-state=live]').waitFor(wait)
  log('logged in')

  // Submit a job: the cost comparison shows every strategy as one types.
  await page.getByRole('link', { name: 'Submit a job' }).click()
  await fill(page.getByLabel('Name'), 'hello-ui')
  await fill(page.getByLabel('Command'), 'sh -c "echo hello from the dashboard; sleep 2; echo done"')
  const cards = page.getByTestId('comparison').locator('[data-strategy]')
  await page.getByTestId('comparison').locator('[data-strategy=balanced] [data-testid=rec-price]').waitFor(wait)
  assert.equal(await cards.count(), 4)
  for (const s of ['balanced', 'cost', 'performance', 'availability']) {
    const text = await page.getByTestId('comparison').locator(`[data-strategy=${s}]`).innerText()
    assert.match(text, /local/, `${s} recommends the local machine for a CPU job`)
    assert.match(text, /\$0\.000/, `${s} shows a price`)
  }
  await checkAccessible('submit')
  await shot('submit')
  const loadsBefore = loads
  await page.getByRole('button', { name: 'Submit', exact: true }).click()
  await page.waitForURL(/#\/jobs\/[0-9a-f-]{36}$/, wait)
  const jobA = page.url().split('/').pop()
  const submit = requests.find((r) => r.method === 'POST' && r.url.pathname === '/api/gpu/jobs/submit')
  assert.ok(submit, 'the job was submitted')
  const fromJobPage = requests.length
  await waitStatus('succeeded')
  await page.getByTestId('logs').getByText('done').waitFor(wait)
  assert.equal(loads, loadsBefore, 'the page never reloaded')
  // No polling: every request the page made while the job ran was caused
  // by one of the job's status events (the page reads the job once per
  // event), never more than that.
  const statusEvents = frames.filter((f) => f.includes(jobA) && f.includes('"job.status"')).length
  assert.ok(statusEvents >= 3, `status events arrived over the WebSocket (${statusEvents})`)
  const counts = {}
  for (const r of requests.slice(fromJobPage)) {
    const k = `${r.method} ${r.url.pathname}`
    counts[k] = (counts[k] ?? 0) + 1
  }
  log('requests while the job ran:', JSON.stringify(counts), 'status events:', statusEvents)
  for (const [k, n] of Object.entries(counts)) {
    assert.ok(n <= statusEvents + 1, `${k} was requested ${n} times for ${statusEvents} events: polling?`)
    assert.ok(!k.endsWith('/api/gpu/tasks'), 'the job page never lists jobs')
  }
  await page.getByTestId('timeline').getByText('Succeeded').waitFor(wait)
  await page.getByTestId('decision').waitFor(wait)
  await checkAccessible('job')
  await shot('job')
  log('job', jobA, 'succeeded, live')

  // The list follows live too: a job submitted elsewhere appears and ends
  // with no list request.
  await page.getByRole('link', { name: 'Jobs', exact: true }).click()
  await page.locator(`[data-job-id="${jobA}"]`).waitFor(wait)
  const listRequests = () => requests.filter((r) => r.url.pathname === '/api/gpu/tasks').length
  const before = listRequests()
  const jobB = await page.evaluate(async () => {
    const r = await fetch('/api/gpu/jobs/submit', {
      method: 'POST',
      headers: { Authorization: `Bearer ${localStorage.getItem('gpuflow.token')}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ name: 'from-curl', command: ['sh', '-c', 'echo hi'], gpu_count: 0 }),
    })
    return (await r.json()).task_id
  })
  await page.locator(`tr:has([data-job-id="${jobB}"]) [data-status=succeeded]`).waitFor(wait)
  assert.equal(listRequests(), before, 'the list was not asked for again')
  log('list followed job', jobB)

  // Cancel a long job from its page.
  await page.getByRole('link', { name: 'Submit a job' }).click()
  await fill(page.getByLabel('Name'), 'long-one')
  await fill(page.getByLabel('Command'), 'sleep 600')
  await page.getByRole('button', { name: 'Submit', exact: true }).click()
  await page.waitForURL(/#\/jobs\/[0-9a-f-]{36}$/, wait)
  const jobC = page.url().split('/').pop()
  await waitStatus('running')
  await shot('job-running')
  await page.getByRole('button', { name: 'Cancel job' }).click()
  await page.getByRole('dialog').getByRole('button', { name: 'Cancel job' }).click()
  await waitStatus('cancelled')
  log('job', jobC, 'cancelled')

  // Filters live in the URL and survive a reload.
  await page.getByRole('link', { name: 'Jobs', exact: true }).click()
  await page.getByRole('combobox', { name: 'Status' }).click({ force: true })
  await page.getByRole('option', { name: 'Cancelled' }).click()
  await page.waitForURL(/status=cancelled/, wait)
  await page.reload()
  await page.locator(`[data-job-id="${jobC}"]`).waitFor(wait)
  assert.equal(await page.locator(`[data-job-id="${jobA}"]`).count(), 0, 'the filter hides the succeeded job')
  await page.goto(`${base}/ui/#/jobs`)
  await page.locator(`[data-job-id="${jobA}"]`).waitFor(wait)
  await checkAccessible('jobs')
  await shot('jobs')

  // Providers: modes, health, catalogue, observations, charts.
  await page.getByRole('link', { name: 'Providers' }).click()
  await page.locator('[data-provider=local] [data-testid=mode]').waitFor(wait)
  await page.getByRole('img', { name: /provisioning success rate/ }).locator('svg').waitFor(wait)
  await page.getByText('NVIDIA GeForce RTX 4090').first().waitFor(wait)
  await checkAccessible('providers')
  await shot('providers')

  // Chinese, remembered across a reload.
  await page.getByRole('combobox', { name: 'Language' }).click({ force: true })
  await page.getByRole('option', { name: '简体中文' }).click()
  await page.getByRole('heading', { name: '云服务商' }).waitFor(wait)
  await page.reload()
  await page.getByRole('heading', { name: '云服务商' }).waitFor(wait)
  await shot('providers-zh')
  await page.getByRole('link', { name: '任务', exact: true }).click()
  await page.getByRole('heading', { name: '我的任务' }).waitFor(wait)
  await page.getByText('成功').first().waitFor(wait)
  await shot('jobs-zh')
  await page.goto(`${base}/ui/#/jobs/${jobA}`)
  await page.getByText('调度决策').waitFor(wait)
  await shot('job-zh')
  await page.getByRole('link', { name: '提交任务' }).click()
  await page.getByTestId('comparison').locator('[data-strategy=balanced] [data-testid=rec-price]').waitFor(wait)
  await shot('submit-zh')
  log('Chinese works and is remembered')

  // Another user sees none of the first user's jobs, anywhere.
  await page.getByRole('button', { name: '退出登录' }).click()
  await page.getByRole('heading', { name: '登录' }).waitFor(wait)
  // An invitation link fills the code in.
  await page.goto(`${base}/ui/#/register?invite=${encodeURIComponent(invites[1])}`)
  await page.getByRole('heading', { name: '创建账号' }).waitFor(wait)
  assert.equal(await page.getByLabel('邀请码').inputValue(), invites[1])
  await fill(page.getByLabel('邮箱'), bob.email)
  await fill(page.getByLabel('密码', { exact: true }), bob.password)
  await fill(page.getByLabel('再次输入密码'), bob.password)
  const bobFrom = frames.length
  await page.getByRole('button', { name: '创建账号' }).click()
  await page.getByRole('heading', { name: '我的任务' }).waitFor(wait)
  await page.getByText('这里还没有任务。').waitFor(wait)
  for (const id of [jobA, jobB, jobC]) {
    assert.equal(await page.locator(`[data-job-id="${id}"]`).count(), 0)
  }
  const body = await page.locator('body').innerText()
  assert.ok(!/hello-ui|long-one|from-curl/.test(body), 'no name of the first user’s jobs')
  await page.goto(`${base}/ui/#/jobs/${jobA}`)
  await page.getByTestId('job-not-found').waitFor(wait)
  assert.ok(!(await page.locator('body').innerText()).includes('hello-ui'))
  // A job of Bob's own, to be sure his feed works, while Alice's ids never
  // reach his WebSocket.
  await page.evaluate(async () => {
    await fetch('/api/gpu/jobs/submit', {
      method: 'POST',
      headers: { Authorization: `Bearer ${localStorage.getItem('gpuflow.token')}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ name: 'bobs', command: ['true'], gpu_count: 0 }),
    })
  })
  await page.goto(`${base}/ui/#/jobs`)
  await page.locator('tr:has-text("bobs") [data-status=succeeded]').waitFor(wait)
  for (const f of frames.slice(bobFrom)) {
    for (const id of [jobA, jobB, jobC]) assert.ok(!f.includes(id), `Bob's feed carried Alice's job ${id}`)
  }
  await shot('other-user')
  log('a second user sees none of the first one’s jobs')

  // Two A100s on Tencent come as an instance of 8 (its A100 types have 1
  // or 8), rented whole: the page says so, and the price counts all 8.
  const whole = await page.evaluate(async () => {
    const r = await fetch('/api/gpu/jobs/submit', {
      method: 'POST',
      headers: { Authorization: `Bearer ${localStorage.getItem('gpuflow.token')}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ name: 'whole', command: ['true'], gpu_type: 'A100', gpu_count: 2, provider: 'tencent' }),
    })
    return r.json()
  })
  assert.equal(whole.scheduling_info.offer_gpu_count, 8, JSON.stringify(whole.scheduling_info))
  await page.goto(`${base}/ui/#/jobs/${whole.task_id}`)
  await page.getByTestId('machine-gpus').filter({ hasText: '8' }).waitFor(wait)
  await waitStatus('succeeded')
  // An ended job's cost is its cost, no longer "so far".
  await page.locator('.el-descriptions__label').filter({ hasText: /^\s*费用\s*$/ }).waitFor(wait)
  await shot('whole-machine-zh')
  log('a job rented a whole 8-GPU machine for 2 GPUs and says so')

  assert.deepEqual(errors.filter((e) => !/401|403|404/.test(e)), [], 'no errors in the page')
  log(`passed; screenshots in ${artifacts}`)
} catch (e) {
  await page.screenshot({ path: join(artifacts, 'failure.png'), fullPage: true }).catch(() => undefined)
  console.error('dashboard: FAILED at', page.url(), '\n', e)
  if (errors.length) console.error('page errors:', errors)
  process.exitCode = 1
} finally {
  await context.close()
  rmSync(profile, { recursive: true, force: true })
}
