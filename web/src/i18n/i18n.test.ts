import { describe, expect, it } from 'vitest'
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import en from './en'
import zhCN from './zh-CN'

function keys(o: object, prefix = ''): string[] {
  return Object.entries(o).flatMap(([k, v]) =>
    typeof v === 'object' && v !== null ? keys(v, `${prefix}${k}.`) : [`${prefix}${k}`],
  )
}
function get(o: unknown, key: string): unknown {
  return key.split('.').reduce<unknown>((x, k) => (x as Record<string, unknown> | undefined)?.[k], o)
}
function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f)
    if (statSync(p).isDirectory()) return sources(p)
    return /\.(vue|ts)$/.test(f) && !f.endsWith('.test.ts') && !p.includes('i18n') ? [p] : []
  })
}

describe('translations', () => {
  it('have the same keys in English and Chinese', () => {
    expect(keys(zhCN).sort()).toEqual(keys(en).sort())
  })
  it('are all non-empty, and Chinese is translated', () => {
    for (const k of keys(en)) {
      expect(get(en, k), k).toBeTruthy()
      expect(get(zhCN, k), k).toBeTruthy()
    }
    // Most Chinese strings contain CJK characters (a few are names or IDs).
    const untranslated = keys(en).filter((k) => !/[\u4e00-\u9fff]/.test(String(get(zhCN, k))))
    const names = ['job.id', 'jobs.gpu'] // the same in both languages
    expect(untranslated.filter((k) => !names.includes(k))).toEqual([])
  })
  it('cover every key the pages use', () => {
    const root = join(__dirname, '..')
    const used = new Set<string>()
    for (const f of sources(root)) {
      const src = readFileSync(f, 'utf8')
      for (const m of src.matchAll(/\bt\(\s*'([a-zA-Z0-9_.]+)'/g)) used.add(m[1])
      for (const m of src.matchAll(/\bt\(\s*`([a-zA-Z]+)\.\$\{/g)) {
        expect(get(en, m[1]), `${f}: ${m[1]}`).toBeTypeOf('object')
      }
      for (const m of src.matchAll(/title: '([a-z]+\.[a-zA-Z]+)'/g)) used.add(m[1])
    }
    expect(used.size).toBeGreaterThan(50)
    for (const k of used) {
      expect(get(en, k), `en: ${k}`).toBeTypeOf('string')
      expect(get(zhCN, k), `zh-CN: ${k}`).toBeTypeOf('string')
    }
  })
})
