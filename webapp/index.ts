export { WebApp, startWebApp, PUBLIC_DIR } from './web-app.ts';
export { benchHttp, type HttpBenchOptions, type HttpBenchResult, type HttpBenchRow } from './http-bench.ts';
export { OPENAPI_DOCUMENT } from './openapi.ts';
export { HTTP_STATUS_OF } from './http-status.ts';
