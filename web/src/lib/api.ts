// A small client of the gpuflow API: JSON in and out, the bearer token
// from the auth store, errors as ApiError with the API's code and message.

export class ApiError extends Error {
  constructor(
    public status: number,
    public code: string,
    message: string,
    public details?: Record<string, unknown>,
  ) {
    super(message)
  }
}

let token = ''
let onUnauthorized: (() => void) | undefined

export function setToken(t: string): void {
  token = t
}

export function getToken(): string {
  return token
}

/** setUnauthorizedHandler is called when a signed-in request answers 401. */
export function setUnauthorizedHandler(f: () => void): void {
  onUnauthorized = f
}

export interface RequestOptions {
  method?: string
  body?: unknown
  form?: Record<string, string>
  headers?: Record<string, string>
  signal?: AbortSignal
}

export async function request<T>(path: string, opts: RequestOptions = {}): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json', ...opts.headers }
  let body: BodyInit | undefined
  if (opts.form) {
    body = new URLSearchParams(opts.form)
    headers['Content-Type'] = 'application/x-www-form-urlencoded'
  } else if (opts.body !== undefined) {
    body = JSON.stringify(opts.body)
    headers['Content-Type'] = 'application/json'
  }
  if (token) headers.Authorization = `Bearer ${token}`
  const res = await fetch(path, { method: opts.method ?? 'GET', headers, body, signal: opts.signal })
  const text = await res.text()
  let data: unknown = undefined
  if (text) {
    try {
      data = JSON.parse(text)
    } catch {
      data = undefined
    }
  }
  if (!res.ok) {
    const e = (data as { error?: { code?: string; message?: string; details?: Record<string, unknown> } })?.error
    if (res.status === 401 && token && onUnauthorized) onUnauthorized()
    throw new ApiError(res.status, e?.code ?? String(res.status), e?.message ?? res.statusText, e?.details)
  }
  return data as T
}

/** query builds "?a=1&b=2" from the set values of q. */
export function query(q: Record<string, string | number | undefined | null>): string {
  const p = new URLSearchParams()
  for (const [k, v] of Object.entries(q)) {
    if (v !== undefined && v !== null && v !== '') p.set(k, String(v))
  }
  const s = p.toString()
  return s ? `?${s}` : ''
}

/**
 * followLogs streams a job's output from offset (GET …/logs?follow=1, one
 * response that the server ends when the job has ended), calling onChunk
 * with each piece of text. It resolves when the stream ends.
 */
export async function followLogs(
  id: string,
  offset: number,
  onChunk: (text: string) => void,
  signal: AbortSignal,
): Promise<void> {
  const res = await fetch(`/api/gpu/tasks/${id}/logs${query({ follow: 1, offset })}`, {
    headers: { Authorization: `Bearer ${token}` },
    signal,
  })
  if (!res.ok || !res.body) throw new ApiError(res.status, String(res.status), res.statusText)
  const reader = res.body.getReader()
  const dec = new TextDecoder()
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    onChunk(dec.decode(value, { stream: true }))
  }
  const rest = dec.decode()
  if (rest) onChunk(rest)
}
