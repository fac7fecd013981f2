// Formatting shared by the pages.

export function money(v: number | null | undefined, digits = 2): string {
  if (v === null || v === undefined || Number.isNaN(v)) return '—'
  if (v > 0 && v < 0.01) return `$${v.toFixed(4)}`
  return `$${v.toFixed(digits)}`
}

/** seconds formats a duration: 0.2 s, 42 s, 3 min 5 s, 2 h 10 min. */
export function seconds(v: number | null | undefined): string {
  if (v === null || v === undefined || Number.isNaN(v)) return '—'
  if (v < 10) return `${v.toFixed(1)} s`
  if (v < 60) return `${Math.round(v)} s`
  if (v < 3600) {
    const m = Math.floor(v / 60)
    const s = Math.round(v - m * 60)
    return s ? `${m} min ${s} s` : `${m} min`
  }
  const h = Math.floor(v / 3600)
  const m = Math.round((v - h * 3600) / 60)
  return m ? `${h} h ${m} min` : `${h} h`
}

export function percent(v: number | null | undefined): string {
  if (v === null || v === undefined || Number.isNaN(v)) return '—'
  return `${Math.round(v * 100)}%`
}

export function dateTime(s: string | null | undefined, locale: string): string {
  if (!s) return '—'
  const d = new Date(s)
  if (Number.isNaN(d.getTime())) return '—'
  return d.toLocaleString(locale, { dateStyle: 'short', timeStyle: 'medium' })
}

/** costSoFar is what the job has cost at now: price × time since it started. */
export function costSoFar(
  j: { price_per_hour?: number; started_at?: string | null; finished_at?: string | null; cost_so_far?: number },
  now: number,
): number {
  if (!j.started_at || !j.price_per_hour) return j.cost_so_far ?? 0
  const start = Date.parse(j.started_at)
  const end = j.finished_at ? Date.parse(j.finished_at) : now
  return Math.max(0, (j.price_per_hour * (end - start)) / 3_600_000)
}

/**
 * splitCommand turns a command line into arguments as a POSIX shell would
 * for words, 'single' and "double" quotes and backslashes (no expansion).
 */
export function splitCommand(line: string): string[] {
  const out: string[] = []
  let cur = ''
  let has = false
  let q: '' | "'" | '"' = ''
  for (let i = 0; i < line.length; i++) {
    const c = line[i]
    if (q === "'") {
      if (c === "'") q = ''
      else cur += c
    } else if (q === '"') {
      if (c === '"') q = ''
      else if (c === '\\' && i + 1 < line.length && '"\\$`'.includes(line[i + 1])) cur += line[++i]
      else cur += c
    } else if (c === "'" || c === '"') {
      q = c
      has = true
    } else if (c === '\\' && i + 1 < line.length) {
      cur += line[++i]
      has = true
    } else if (/\s/.test(c)) {
      if (has || cur) out.push(cur)
      cur = ''
      has = false
    } else {
      cur += c
    }
  }
  if (has || cur) out.push(cur)
  return out
}
