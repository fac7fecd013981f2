import { describe, expect, it } from 'vitest'
import { costSoFar, money, seconds, splitCommand } from './format'

describe('splitCommand', () => {
  it('splits words and honours quotes and backslashes', () => {
    expect(splitCommand('python train.py --epochs 3')).toEqual(['python', 'train.py', '--epochs', '3'])
    expect(splitCommand(`sh -c "echo hello; sleep 1"`)).toEqual(['sh', '-c', 'echo hello; sleep 1'])
    expect(splitCommand(`echo 'a  b' "" c\\ d`)).toEqual(['echo', 'a  b', '', 'c d'])
    expect(splitCommand('   ')).toEqual([])
  })
})

describe('formatting', () => {
  it('formats seconds for people', () => {
    expect(seconds(0.2)).toBe('0.2 s')
    expect(seconds(42)).toBe('42 s')
    expect(seconds(185)).toBe('3 min 5 s')
    expect(seconds(7800)).toBe('2 h 10 min')
    expect(seconds(null)).toBe('—')
  })
  it('formats money', () => {
    expect(money(1.5)).toBe('$1.50')
    expect(money(0.0012)).toBe('$0.0012')
    expect(money(undefined)).toBe('—')
  })
  it('computes the cost so far from the price and the run time', () => {
    const j = { price_per_hour: 2, started_at: '2026-01-01T00:00:00Z', finished_at: null }
    expect(costSoFar(j, Date.parse('2026-01-01T00:30:00Z'))).toBeCloseTo(1)
    expect(costSoFar({ ...j, finished_at: '2026-01-01T00:15:00Z' }, Date.parse('2026-01-01T05:00:00Z'))).toBeCloseTo(0.5)
    expect(costSoFar({ price_per_hour: 2 }, 0)).toBe(0)
  })
})
