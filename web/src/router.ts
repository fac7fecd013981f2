import { createRouter, createWebHashHistory } from 'vue-router'
import { useAuth } from './stores/auth'

// Hash history: the API serves one page at /ui/ and the dashboard's own
// routes live after the # (e.g. /ui/#/jobs?status=running), so a link or
// a reload always works.
export const router = createRouter({
  history: createWebHashHistory(),
  routes: [
    { path: '/', redirect: '/jobs' },
    { path: '/login', component: () => import('./views/LoginView.vue'), meta: { public: true, title: 'login.title' } },
    {
      path: '/register',
      component: () => import('./views/RegisterView.vue'),
      meta: { public: true, title: 'register.title' },
    },
    { path: '/jobs', component: () => import('./views/JobsView.vue'), meta: { title: 'nav.jobs' } },
    { path: '/jobs/:id', component: () => import('./views/JobView.vue'), meta: { title: 'job.title' } },
    { path: '/submit', component: () => import('./views/SubmitView.vue'), meta: { title: 'nav.submit' } },
    { path: '/providers', component: () => import('./views/ProvidersView.vue'), meta: { title: 'nav.providers' } },
    { path: '/:rest(.*)*', redirect: '/jobs' },
  ],
})

router.beforeEach((to) => {
  const auth = useAuth()
  if (!to.meta.public && !auth.signedIn) return { path: '/login', query: { next: to.fullPath } }
  if (to.meta.public && auth.signedIn) return { path: '/jobs' }
  return true
})
