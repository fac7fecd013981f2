import { defineStore } from 'pinia'
import { computed, ref } from 'vue'
import { request, setToken, setUnauthorizedHandler } from '../lib/api'
import type { User } from '../lib/types'

const tokenKey = 'gpuflow.token'

export const useAuth = defineStore('auth', () => {
  const token = ref(localStorage.getItem(tokenKey) ?? '')
  const user = ref<User | null>(null)
  setToken(token.value)

  const signedIn = computed(() => token.value !== '')

  function setSession(t: string): void {
    token.value = t
    setToken(t)
    if (t) localStorage.setItem(tokenKey, t)
    else localStorage.removeItem(tokenKey)
  }

  async function login(email: string, password: string): Promise<void> {
    const r = await request<{ access_token: string }>('/auth/jwt/login', {
      method: 'POST',
      form: { username: email, password },
    })
    setSession(r.access_token)
    await loadUser()
  }

  /** register creates the account (with a superuser's invitation code when given) and logs in. */
  async function register(email: string, password: string, inviteCode = ''): Promise<void> {
    const body: Record<string, string> = { email, password }
    if (inviteCode) body.invite_code = inviteCode
    await request('/auth/register', { method: 'POST', body })
    await login(email, password)
  }

  async function loadUser(): Promise<void> {
    user.value = await request<User>('/users/me')
  }

  function logout(): void {
    setSession('')
    user.value = null
  }

  setUnauthorizedHandler(() => logout())

  return { token, user, signedIn, login, register, loadUser, logout }
})
