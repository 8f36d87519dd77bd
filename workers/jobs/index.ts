export { JobsWorker, JOBS_DB_FILE, startJobsWorker } from './jobs-worker.ts';
export { JobService, type JobTarget, type JobServiceOptions } from './job-service.ts';
export { JobStore, type JobStoreOptions, type ClaimedJob, type JobRunOptions } from './job-store.ts';
