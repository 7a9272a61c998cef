package org.gleammri.client;

/** The job ended {@code failed}; {@link #error()} is the service's message (the reader's or the network's). */
public class JobFailedException extends GleamException {
    private static final long serialVersionUID = 1L;

    private final transient Job job;

    public JobFailedException(Job job) {
        super("reconstruction job " + job.id() + " (" + job.fileName() + ") failed: " + errorOf(job));
        this.job = job;
    }

    /** The job as last reported. */
    public Job job() {
        return job;
    }

    /** The job's {@code error}. */
    public String error() {
        return errorOf(job);
    }

    private static String errorOf(Job job) {
        return job.error() == null ? "(the service gave no error message)" : job.error();
    }
}
