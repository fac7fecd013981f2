import { createI18n } from 'vue-i18n'
import en from './en'
import zhCN from './zh-CN'

export const locales = [
  { code: 'en', name: 'English' },
  { code: 'zh-CN', name: '简体中文' },
] as const
export type Locale = (typeof locales)[number]['code']

const key = 'gpuflow.locale'

/** initialLocale is the remembered choice, else the browser's language. */
export function initialLocale(): Locale {
  const saved = localStorage.getItem(key)
  if (saved === 'en' || saved === 'zh-CN') return saved
  return navigator.language?.toLowerCase().startsWith('zh') ? 'zh-CN' : 'en'
}

export function rememberLocale(l: Locale): void {
  localStorage.setItem(key, l)
  document.documentElement.lang = l
}

export const i18n = createI18n({
  legacy: false,
  locale: initialLocale(),
  fallbackLocale: 'en',
  messages: { en, 'zh-CN': zhCN },
})
