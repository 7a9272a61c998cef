package org.gleammri.engine;

/**
 * ONNX Runtime failed on input the engine had accepted (an exported graph it cannot run, memory),
 * or the network's output is not finite. Not the input's fault: the command line ends with exit
 * code 1 on it.
 */
public class GleamEngineException extends Exception {
    private static final long serialVersionUID = 1L;

    /** {@code message}: one line. */
    public GleamEngineException(String message, Throwable cause) {
        super(message, cause);
    }
}
