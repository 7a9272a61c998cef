#!/usr/bin/env bash
# Builds and tests the Java side of gleam-mri with Maven (java/pom.xml, modules gleam-client and
# gleam-engine): compiles for Java 17, runs both modules' JUnit 5 tests (surefire) and writes
#   java/gleam-client/target/gleam-client.jar   runnable client of gleam serve
#   java/gleam-engine/target/gleam.jar          runnable ONNX reconstruction engine
# Installs Maven (and OpenJDK 17) with apt-get when `mvn` or `javac` is missing, as root or through
# sudo (GLEAM_JAVA_NO_INSTALL=1 turns that off). Dependencies come from Maven Central into ~/.m2.
# Extra arguments go to mvn, e.g. bash java/build.sh -o (offline) or -DskipTests.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if ! command -v mvn >/dev/null 2>&1 || ! command -v javac >/dev/null 2>&1; then
    if [[ "${GLEAM_JAVA_NO_INSTALL:-0}" == 1 ]]; then
        echo "build.sh: mvn or javac is missing (install maven and openjdk-17-jdk-headless)" >&2
        exit 1
    fi
    packages=(maven openjdk-17-jdk-headless)
    sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 || {
            echo "build.sh: install ${packages[*]} (apt-get, as root)" >&2
            exit 1
        }
        sudo=(sudo)
    fi
    echo "build.sh: installing ${packages[*]} with apt-get" >&2
    export DEBIAN_FRONTEND=noninteractive
    "${sudo[@]}" apt-get install -y -q --no-install-recommends "${packages[@]}" >/dev/null \
        || { "${sudo[@]}" apt-get update -q >/dev/null \
            && "${sudo[@]}" apt-get install -y -q --no-install-recommends "${packages[@]}" >/dev/null; }
fi

mvn -q -B -f "$here/pom.xml" package "$@"
java -jar "$here/gleam-engine/target/gleam.jar" --help >/dev/null
java -jar "$here/gleam-client/target/gleam-client.jar" --help >/dev/null
echo "build.sh: $here/gleam-client/target/gleam-client.jar"
echo "build.sh: $here/gleam-engine/target/gleam.jar"
