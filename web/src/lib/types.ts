// The API's shapes, as api/openapi.json describes them (the fields the
// dashboard reads).

export type JobStatus =
  | 'queued'
  | 'scheduling'
  | 'provisioning'
  | 'running'
  | 'succeeded'
  | 'failed'
  | 'cancelling'
  | 'cancelled'

export const statuses: JobStatus[] = [
  'queued',
  'scheduling',
  'provisioning',
  'running',
  'succeeded',
  'failed',
  'cancelling',
  'cancelled',
]

export const terminal = (s: string): boolean => s === 'succeeded' || s === 'failed' || s === 'cancelled'

export const strategies = ['balanced', 'cost', 'performance', 'availability'] as const
export type Strategy = (typeof strategies)[number]

export interface User {
  id: string
  email: string
  is_superuser: boolean
}

export interface JobSpec {
  name?: string
  image?: string
  command?: string[]
  env?: Record<string, string>
  gpu_type?: string
  gpu_count?: number
  priority?: number
  strategy?: string
  spot?: boolean
  provider?: string | null
  max_price_per_hour?: number | null
  estimated_duration?: number
}

export interface Attempt {
  provider: string
  gpu_type?: string
  region?: string
  machine_id?: string
  started_at: string
  ended_at?: string
  outcome?: string
  error?: string
  reason?: string
}

export interface Job {
  id: string
  name: string
  owner_id?: string
  status: JobStatus
  provider?: string
  instance_id?: string
  spec: JobSpec
  created_at: string
  updated_at?: string
  started_at?: string | null
  finished_at?: string | null
  exit_code?: number | null
  error?: string | null
  attempts?: Attempt[]
  price_per_hour?: number
  cost_so_far?: number
  workflow_id?: string
  temporal_ui_url?: string
  queue?: { position: number; reason: string }
}

export interface JobEvent {
  seq: number
  task_id: string
  job_seq?: number
  type: string
  status?: JobStatus
  provider?: string
  at: string
  data?: Record<string, unknown>
}

export interface Breakdown {
  cost: number
  performance: number
  availability: number
}

export interface Alternative {
  provider: string
  score: number
  gpu_type: string
  gpu_count: number
  region: string
  price_per_hour: number
  breakdown: Breakdown
}

export interface Recommendation extends Alternative {
  estimated_cost: number
  start_estimate_s: number
  start_measured?: boolean
  alternatives: Alternative[]
}

export interface Recommendations {
  gpu_type: string
  gpu_count: number
  recommendations: Record<string, Recommendation | null>
  reasons: Record<string, string[]>
}

export interface SchedulingInfo {
  strategy: string
  provider_score: number
  breakdown?: Breakdown
  weights?: Breakdown
  price_per_hour?: number
  estimated_cost?: number
  start_estimate_s?: number
  start_measured?: boolean
}

export interface SubmitAnswer {
  task_id: string
  status: JobStatus
  provider: string
  scheduling_info: SchedulingInfo
}

export interface Provider {
  name: string
  display_name: string
  description: string
  mode: string
  healthy: boolean
  error?: string
  gpu_types?: string[]
}

export interface GPUOffer {
  gpu_type: string
  gpu_count: number
  memory_gb: number
  host_memory_gb?: number
  vcpus?: number
  price_per_hour: number
  spot_price_per_hour?: number
  available: boolean
  stock?: number
  /** a job takes 1 to gpu_count (RunPod, local); else an instance of gpu_count, rented whole */
  divisible?: boolean
  region?: string
}

export interface Provisioning {
  attempts: number
  started: number
  capacity_errors: number
  failed: number
  success_rate: number | null
  mean_time_to_provision_s: number | null
}

export interface SchedulingMetrics {
  providers: Record<string, { healthy: boolean; mode: string; error?: string; latency_ms: number }>
  provisioning: Record<string, Provisioning>
}
