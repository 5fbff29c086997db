from happyhorse.cli import main

main()
