from framecrypt.cli import main

raise SystemExit(main())
