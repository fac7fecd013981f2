// The scheduling decision the submit answer showed, kept in this browser
// for the job's page (the weights are not in the job's events).
import type { SchedulingInfo } from './types'

const prefix = 'gpuflow.decision.'

export function rememberDecision(id: string, info: SchedulingInfo): void {
  try {
    localStorage.setItem(prefix + id, JSON.stringify(info))
  } catch {
    // storage full or off: the page shows the decision without weights
  }
}

export function recalledDecision(id: string): SchedulingInfo | null {
  try {
    const s = localStorage.getItem(prefix + id)
    return s ? (JSON.parse(s) as SchedulingInfo) : null
  } catch {
    return null
  }
}
