// How long a test waits for a component it (re)started to answer before it fails. Generous on purpose:
// a 2-core CI machine under load (a Kubernetes build next door) takes many seconds to start a process,
// and the wait ends as soon as the component answers, so a fast machine loses nothing.
export const STARTUP_BUDGET_MS = 60_000;

/** How long a started container may take to reach RUNNING. */
export const CONTAINER_START_BUDGET_MS = 30_000;
