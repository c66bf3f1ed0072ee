<?php $inc = '__RELEASE__';
