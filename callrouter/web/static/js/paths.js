// Every API path the pages use, in one place (payloads: docs/api.md, /api/v1/docs).

const e = encodeURIComponent;

export const PATHS = {
  whoami: "/api/v1/me",
  health: "/api/v1/health",
  operatorStream: "/api/v1/stream/operator",
  dashboardStream: "/api/v1/stream/dashboard",
  caller: (number) => `/api/v1/callers/${e(number)}`,
  callerTickets: (number) => `/api/v1/callers/${e(number)}/tickets`,
  callerNote: (number) => `/api/v1/callers/${e(number)}/note`,
  callerAbusive: (number) => `/api/v1/callers/${e(number)}/abusive`,
  callerClass: (number) => `/api/v1/callers/${e(number)}/class`,
  callerOptOut: (number) => `/api/v1/callers/${e(number)}/opt-out`,
  callResolved: (id) => `/api/v1/calls/${e(id)}/resolved`,
  callNote: (id) => `/api/v1/calls/${e(id)}/note`,
  ticket: (id) => `/api/v1/tickets/${e(id)}`,
  operators: "/api/v1/operators",
  bindings: "/api/v1/bindings", // optional: the dashboard falls back to the decision log
  decisions: "/api/v1/decisions",
  rules: "/api/v1/rules",
  rulesValidate: "/api/v1/rules/validate",
  rulesReload: "/api/v1/rules/reload",
  simulate: "/api/v1/route/simulate",
  incidents: "/api/v1/incidents",
  incidentEnd: (id) => `/api/v1/incidents/${e(id)}/end`,
};
