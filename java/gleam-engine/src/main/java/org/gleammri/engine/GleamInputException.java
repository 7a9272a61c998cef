package org.gleammri.engine;

import java.nio.file.Path;
import java.util.Objects;

/**
 * Bad input: a model or data file that is missing, unreadable, truncated or corrupt, a missing
 * dataset, wrong shapes, a kind the model does not reconstruct, or an unusable option. The message
 * is one line, {@code FILE: problem}, naming the file ({@link #file()}) and the problem
 * ({@link #problem()}). The command line ends with exit code 2 on it.
 */
public class GleamInputException extends Exception {
    private static final long serialVersionUID = 1L;

    private final transient Path file;
    private final String problem;

    /** A problem with {@code file} (may be {@code null} for an option that names no file). */
    public GleamInputException(Path file, String problem) {
        super(file == null ? problem : file + ": " + problem);
        this.file = file;
        this.problem = Objects.requireNonNull(problem, "problem");
    }

    /** The same, with the library exception that revealed it. */
    public GleamInputException(Path file, String problem, Throwable cause) {
        this(file, problem);
        initCause(cause);
    }

    /** The file at fault, or {@code null}. */
    public Path file() {
        return file;
    }

    /** The problem, without the file name. */
    public String problem() {
        return problem;
    }
}
