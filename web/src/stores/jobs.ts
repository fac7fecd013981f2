import { defineStore } from 'pinia'
import { reactive, ref } from 'vue'
import { query, request } from '../lib/api'
import { terminal, type Job, type JobEvent } from '../lib/types'

export interface JobFilters {
  status: string
  provider: string
}

/**
 * The user's jobs as the list shows them: loaded once per filter, then
 * kept current by the live feed's events. A status event changes the row
 * at once; the job is read again (one request, caused by the event) when
 * it starts running or ends, for its price, times and exit code, and when
 * it is a job this page has not seen (submitted elsewhere). While the
 * list is not on screen it asks nothing.
 */
export const useJobs = defineStore('jobs', () => {
  const byId = reactive(new Map<string, Job>())
  const order = ref<string[]>([])
  const nextCursor = ref<string | null>(null)
  const loading = ref(false)
  const error = ref('')
  const filters = reactive<JobFilters>({ status: '', provider: '' })
  /** active is true while the list is on screen. */
  const active = ref(false)
  let generation = 0

  function matches(j: Job): boolean {
    return (!filters.status || j.status === filters.status) && (!filters.provider || j.provider === filters.provider)
  }

  async function load(f: JobFilters): Promise<void> {
    filters.status = f.status
    filters.provider = f.provider
    const gen = ++generation
    loading.value = true
    error.value = ''
    try {
      const r = await request<{ tasks: Job[]; next_cursor: string | null }>(
        `/api/gpu/tasks${query({ status: f.status, provider: f.provider, limit: 50 })}`,
      )
      if (gen !== generation) return
      byId.clear()
      for (const j of r.tasks) byId.set(j.id, j)
      order.value = r.tasks.map((j) => j.id)
      nextCursor.value = r.next_cursor
    } catch (e) {
      if (gen === generation) error.value = (e as Error).message
    } finally {
      if (gen === generation) loading.value = false
    }
  }

  async function loadMore(): Promise<void> {
    if (!nextCursor.value) return
    const gen = generation
    const r = await request<{ tasks: Job[]; next_cursor: string | null }>(
      `/api/gpu/tasks${query({ status: filters.status, provider: filters.provider, limit: 50, cursor: nextCursor.value })}`,
    )
    if (gen !== generation) return
    for (const j of r.tasks) {
      if (!byId.has(j.id)) order.value.push(j.id)
      byId.set(j.id, j)
    }
    nextCursor.value = r.next_cursor
  }

  async function refresh(id: string): Promise<void> {
    const gen = generation
    try {
      const j = await request<Job>(`/api/gpu/tasks/${id}`)
      if (gen !== generation) return
      place(j)
    } catch {
      // gone or not ours: leave the list as it is
    }
  }

  function place(j: Job): void {
    const known = byId.has(j.id)
    if (!matches(j)) {
      if (known) {
        byId.delete(j.id)
        order.value = order.value.filter((x) => x !== j.id)
      }
      return
    }
    byId.set(j.id, j)
    if (!known) {
      // newest first, by creation time
      const t = Date.parse(j.created_at)
      const i = order.value.findIndex((x) => Date.parse(byId.get(x)?.created_at ?? '') < t)
      if (i < 0) order.value.push(j.id)
      else order.value.splice(i, 0, j.id)
    }
  }

  function applyEvent(e: JobEvent): void {
    if (e.type !== 'job.status' || !e.status) return
    const j = byId.get(e.task_id)
    if (!active.value) {
      // Not on screen: keep the rows' status, ask nothing (the list loads
      // again when it is shown).
      if (j) j.status = e.status
      return
    }
    if (!j) {
      void refresh(e.task_id)
      return
    }
    j.status = e.status
    if (e.provider) j.provider = e.provider
    if (e.status === 'running' || terminal(e.status) || !matches(j)) void refresh(e.task_id)
  }

  function clear(): void {
    generation++
    byId.clear()
    order.value = []
    nextCursor.value = null
  }

  return { byId, order, nextCursor, loading, error, filters, active, load, loadMore, refresh, place, applyEvent, clear }
})
