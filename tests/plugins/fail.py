"""A plug-in that fails: two lines on stderr, exit 3.

python tests/plugins/fail.py ANY...
"""

import sys

print("reading the input", file=sys.stderr)
print("filter broke: no rules file", file=sys.stderr)
sys.exit(3)
